# -*- coding: utf-8 -*-
"""Load the collection the way Ansible does, before any test module imports it.

The Makefile installs the collection built from the working tree into
.build/collections and points ANSIBLE_COLLECTIONS_PATH there (and nowhere
else), so the tests can never pick up a stale copy from ~/.ansible.
"""

from __future__ import annotations

import os

from ansible.plugins.loader import init_plugin_loader

COLLECTIONS_PATH = [p for p in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if p]
if not COLLECTIONS_PATH:
    raise RuntimeError('set ANSIBLE_COLLECTIONS_PATH to the installed collection (the Makefile does)')
init_plugin_loader(COLLECTIONS_PATH)
