# -*- coding: utf-8 -*-
"""Fixtures of the lab tests: the lab (tests/lab/fixtures.py) and the DNS servers (tests/support/fixtures.py).

Every test in this folder needs the lab, so root: tests/conftest.py marks each one ``lab`` and skips it, with the
reason, when pytest does not run as root.
"""

from __future__ import annotations

from tests.lab.fixtures import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
from tests.support.fixtures import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
