# -*- coding: utf-8 -*-
"""Pytest fixtures for the lab: one lab per test session, faults reset around every test.

Use from a conftest.py with ``from tests.lab.fixtures import *  # noqa`` or
register as a plugin (``-p tests.lab.fixtures``). Fixtures:

``lab_session``  the session's Lab, brought up on first use, torn down at the end of the session
``lab``          the same Lab, with every fault off and the DNS zone as at ``up`` before and after the test
``lab_pristine`` like ``lab``, and every host's firewall restored to how ``up`` left it
``lab_cli``      runs the command line against a lab directory

Environment: TWLAB_DIR (lab directory), TWLAB_HOSTS (default ``firewalld:2,ufw:2,nftables:1,none:1``),
TWLAB_REUSE=1 (use a lab already up, e.g. from ``python -m tests.lab up``, and leave it up).
The lab needs root: tests/conftest.py marks every test using these fixtures (and every test in tests/integration_lab)
``lab`` and skips it, saying why, without root; used elsewhere without root the fixtures fail saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.lab import config
from tests.lab.lab import Lab, describe
from tests.lab.system import root_snapshot

SESSION_HOSTS = 'firewalld:2,ufw:2,nftables:1,none:1'

__all__ = ['LabSession', 'SESSION', 'lab_session', 'lab', 'lab_pristine', 'lab_cli', 'pytest_configure', 'pytest_collection_modifyitems']


class LabSession:
    """The one lab of a test session (a module-level singleton, so two conftests importing these fixtures share it)."""

    def __init__(self):
        self.lab = None
        self.root_before = None      # the root namespace before this session's first `up`
        self.up_seconds = None
        self.down_seconds = None
        self.reuse = os.environ.get('TWLAB_REUSE') == '1'

    @property
    def hosts_spec(self):
        # The tests cover every backend, "none" included.
        return os.environ.get('TWLAB_HOSTS', SESSION_HOSTS)

    def new_lab(self):
        return Lab(os.environ.get('TWLAB_DIR'))

    def ensure_up(self):
        if os.geteuid() != 0:
            pytest.fail('the lab needs root (network and mount namespaces): run the tests as root', pytrace=False)
        if self.lab is not None and self.lab.is_up:
            return self.lab
        lab = self.new_lab()
        if self.reuse and lab.is_up and lab.status()['healthy']:
            self.lab = lab
            return lab
        if self.root_before is None:
            self.root_before = root_snapshot()
        started = time.monotonic()
        lab.up(self.hosts_spec)
        self.up_seconds = time.monotonic() - started
        print('\n' + describe(lab.summary()))
        self.lab = lab
        return lab

    def ensure_down(self):
        """Tear the session's lab down (no-op when it is not up or is reused)."""
        if self.reuse:
            return None
        lab = self.lab or self.new_lab()
        self.down_seconds = lab.down()
        self.lab = None
        return self.down_seconds


SESSION = LabSession()


@pytest.fixture(scope='session')
def lab_session():
    """The session's lab, up."""
    yield SESSION.ensure_up()
    SESSION.ensure_down()


@pytest.fixture
def lab(lab_session):  # pylint: disable=redefined-outer-name
    """The session's lab with no fault active, before and after the test."""
    lab_session.reset()
    yield lab_session
    lab_session.reset()


@pytest.fixture
def lab_pristine(lab):  # pylint: disable=redefined-outer-name
    """The session's lab with no fault and every host firewall as `up` left it, before and after the test."""
    lab.reset_firewalls()
    yield lab
    lab.reset_firewalls()


@pytest.fixture
def lab_cli():
    """``lab_cli(lab_dir, *args)``: run `python -m tests.lab --dir DIR ARGS...` as a user would."""
    def call(lab_dir, *args, timeout=120):
        return subprocess.run([sys.executable, '-m', 'tests.lab', '--dir', lab_dir] + list(args), cwd=config.REPO,
                              capture_output=True, text=True, timeout=timeout, check=False)
    return call


def pytest_configure(config):  # pylint: disable=redefined-outer-name
    config.addinivalue_line('markers', 'lab_first: a lab life-cycle test that must run before the session lab is up')
    config.addinivalue_line('markers', 'lab_last: a lab life-cycle test that must run after every other test')


def pytest_collection_modifyitems(items):
    """Life-cycle tests bracket the session: `lab_first` ones run first, `lab_last` ones last."""
    first = [i for i in items if i.get_closest_marker('lab_first')]
    last = [i for i in items if i.get_closest_marker('lab_last')]
    middle = [i for i in items if i not in first and i not in last]
    items[:] = first + middle + last
