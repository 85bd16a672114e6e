# -*- coding: utf-8 -*-
"""Fixtures of the lab tests: the lab (tests/lab/fixtures.py), the DNS servers (tests/support/fixtures.py) and the
egress plan the lab's edge gives.

Every test in this folder needs the lab, so root: tests/conftest.py marks each one ``lab`` and skips it, with the
reason, when pytest does not run as root.
"""

from __future__ import annotations

import pytest

from tests.lab import config
from tests.lab.fixtures import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
from tests.support.fixtures import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import


@pytest.fixture(scope='module')
def plan(lab_session, edge_endpoints):  # pylint: disable=redefined-outer-name
    """The egress plan of the lab's edge, resolved by the lookup from the lab's DNS (once per test module)."""
    found = edge_endpoints.run([], variables={}, nameservers=lab_session.nameservers,
                               trusted_ranges=config.TRUSTED_RANGES, cache=False)[0]
    purposes = {rule['purpose'] for rule in found['rules']}
    assert {'tunnel', 'api', 'update'} <= purposes, found['rules']
    return found
