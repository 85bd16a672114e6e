# -*- coding: utf-8 -*-
"""One task timed inside a play on a lab host, as bench_probe and bench_firewall measure it.

The play opens the SSH connection first (ping), so the figure is the task's own time; a task that registers
``probe`` (edge_probe) also reports how long the module took on the host (its ``elapsed_ms``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PLAYBOOK = '''
- hosts: {host}
  gather_facts: false
  tasks:
    - name: Open the SSH connection before timing
      ansible.builtin.ping:
    - ansible.builtin.set_fact:
        started: "{{{{ now().timestamp() }}}}"
{task}
    - ansible.builtin.copy:
        dest: "{out}"
        content: "{{{{ {{'seconds': now().timestamp() - (started | float),
                       'module_ms': probe.elapsed_ms | default(None)}} | to_json }}}}"
      delegate_to: localhost
{check}'''


def timed_task(lab, workdir, host, name, task, check=''):
    """Run the play once; return (task seconds, seconds the module reported for itself or None)."""
    out = os.path.join(workdir, name + '.json')
    playbook = os.path.join(workdir, name + '.yml')
    with open(playbook, 'w', encoding='utf-8') as handle:
        handle.write(PLAYBOOK.format(host=host, task=task, out=out, check=check))
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', lab.inventory, playbook]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit('%s failed:\n%s%s' % (name, result.stdout[-3000:], result.stderr[-2000:]))
    with open(out, encoding='utf-8') as handle:
        report = json.load(handle)
    module_ms = report['module_ms']
    return report['seconds'], None if module_ms is None else module_ms / 1000.0
