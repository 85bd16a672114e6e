# -*- coding: utf-8 -*-
"""Reading what ansible-playbook prints, as the tests that run it need."""

from __future__ import annotations

import re

RECAP = re.compile(r'^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.MULTILINE)


def play_recap(stdout):
    """{host: {'ok', 'changed', 'unreachable', 'failed'}} from the PLAY RECAP lines."""
    return {m.group(1): {'ok': int(m.group(2)), 'changed': int(m.group(3)), 'unreachable': int(m.group(4)),
                         'failed': int(m.group(5))} for m in RECAP.finditer(stdout)}
