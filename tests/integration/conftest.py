# -*- coding: utf-8 -*-
"""Fixtures: one real DNS server (and one DNS-over-TLS server) per session (tests/support/fixtures.py). The lab's
fixtures (tests/lab/fixtures.py) too, for a lab test not yet moved to tests/integration_lab: tests/conftest.py marks it
``lab`` and skips it without root like those."""

from __future__ import annotations

from tests.lab.fixtures import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
from tests.support.fixtures import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
from tests.support.fixtures import LAB_TRUST  # noqa: F401 pylint: disable=unused-import
