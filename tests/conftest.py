# -*- coding: utf-8 -*-
"""Load the collection the way Ansible does, before any test module imports it.

Which copy the tests see:

- ``make`` (unit, integration, test ...) installs the collection built from the working tree into
  .build/collections and points ANSIBLE_COLLECTIONS_PATH there and nowhere else: the tests use that copy,
  exactly what a user would install.
- a bare ``pytest`` (after ``pip install -r requirements.txt -r requirements-dev.txt ansible-core``) finds no
  collection on ANSIBLE_COLLECTIONS_PATH: the tests then use the checkout itself, through a throwaway
  ``ansible_collections/tunnelwall/cloudflared`` symlink in a temporary directory, so they always see the files
  as they are now. The environment variables are set for the processes the tests start (ansible-playbook, the
  lab) too.

The header of pytest's output says which copy is under test.

Tests that need the lab (root: network and mount namespaces, nft) get the ``lab`` marker here, whether they live
under LAB_TEST_DIRS or use a fixture of tests/lab/fixtures.py; without root they are skipped with the reason.
``-m 'not lab'`` leaves them out altogether.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

from ansible.plugins.loader import init_plugin_loader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE, NAME = 'tunnelwall', 'cloudflared'

# Every test under these folders needs the lab; so does every test that uses one of LAB_FIXTURES (directly or
# through another fixture).
LAB_TEST_DIRS = ('tests/integration_lab',)
LAB_FIXTURES = ('lab_session', 'lab_cli')
NOT_ROOT = 'needs root for the lab (network and mount namespaces, nft): run as root, e.g. sudo make integration'
NOT_ROOT_OTHER = 'needs root (marked root: it gives files to another user)'


def holds_collection(path):
    """True when PATH (an ANSIBLE_COLLECTIONS_PATH entry) holds tunnelwall.cloudflared."""
    return os.path.isdir(os.path.join(path, 'ansible_collections', NAMESPACE, NAME))


def checkout_as_collection():
    """A temporary collections directory whose tunnelwall.cloudflared links to this checkout's files.

    One symlink per top-level entry of the checkout, hidden ones (.git, .venv, .build, caches) left out as
    galaxy.yml's build_ignore leaves them out. The directory is removed when the test process exits. Returns its path.
    """
    root = tempfile.mkdtemp(prefix='tunnelwall-collections-')
    atexit.register(shutil.rmtree, root, True)
    collection_dir = os.path.join(root, 'ansible_collections', NAMESPACE, NAME)
    os.makedirs(collection_dir)
    for entry in os.listdir(REPO):
        if not entry.startswith('.'):
            os.symlink(os.path.join(REPO, entry), os.path.join(collection_dir, entry))
    return root


def collections_path(environ):
    """The collections path to test with, and a note saying which copy it is; sets ENVIRON for child processes."""
    given = [p for p in environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if p]
    if any(holds_collection(p) for p in given):
        return given, 'the installed copy in %s' % os.pathsep.join(given)
    root = checkout_as_collection()
    environ['ANSIBLE_COLLECTIONS_PATH'] = root
    environ['ANSIBLE_COLLECTIONS_SCAN_SYS_PATH'] = 'False'
    environ['PYTHONPATH'] = os.pathsep.join([root] + [p for p in environ.get('PYTHONPATH', '').split(os.pathsep) if p])
    environ.setdefault('ANSIBLE_HOME', os.path.join(root, 'ansible-home'))
    if root not in sys.path:
        sys.path.insert(0, root)
    return [root], 'the checkout %s (no built copy on ANSIBLE_COLLECTIONS_PATH)' % REPO


COLLECTIONS_PATH, UNDER_TEST = collections_path(os.environ)
init_plugin_loader(COLLECTIONS_PATH)


def pytest_report_header():
    return 'tunnelwall.cloudflared under test: %s' % UNDER_TEST


def needs_lab(item):
    """True when the test ITEM needs the lab: it lives in LAB_TEST_DIRS or uses a LAB_FIXTURES fixture."""
    where = os.path.relpath(str(item.path), REPO).replace(os.sep, '/')
    return (any(where.startswith(d + '/') for d in LAB_TEST_DIRS)
            or any(f in getattr(item, 'fixturenames', ()) for f in LAB_FIXTURES))


def pytest_collection_modifyitems(items):
    """Mark the lab's tests ``lab``; without root, skip them and the ``root`` ones with the reason."""
    root = os.geteuid() == 0
    for item in items:
        if needs_lab(item):
            item.add_marker(pytest.mark.lab)
            if not root:
                item.add_marker(pytest.mark.skip(reason=NOT_ROOT))
        elif not root and item.get_closest_marker('root'):
            item.add_marker(pytest.mark.skip(reason=NOT_ROOT_OTHER))
