# -*- coding: utf-8 -*-
"""edge_probe versus a loop of ansible.builtin.wait_for, from a lab host, half of the edge dropped.

A lab with one host and 200 extra edge addresses (TLS on TCP 7844, QUIC on
UDP 7844 at each) is brought up; half of the addresses of each run are
dropped at the edge. The loop checks TCP 7844 of 20 addresses one after
another, as users write it; edge_probe does TCP, TLS and QUIC for all of
them in one task, then for 200. Both figures are the task's own time (the
SSH connection is opened before), median of several runs.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile

from tests.bench.timed import timed_task
from tests.lab import config
from tests.lab.lab import Lab

TIMEOUT = 2
HOST = 'none1'

WAIT_FOR = '''    - name: TCP 7844, one address after another
      ansible.builtin.wait_for:
        host: "{{{{ item }}}}"
        port: 7844
        timeout: {timeout}
      loop: {addresses}
      ignore_errors: true
'''

EDGE_PROBE = '''    - name: TCP, TLS and QUIC to every address at once
      tunnelwall.cloudflared.edge_probe:
        targets: {targets}
        timeout: {timeout}
        ca_path: {ca}
        require: []
      register: probe
'''

EDGE_PROBE_CHECK = '''    - name: Half of the addresses answered, with TCP, TLS and QUIC each
      ansible.builtin.assert:
        that: probe.results | selectattr('ok') | list | length == {expected_ok}
'''


def _time(lab, workdir, name, task, runs, check=''):
    """Median task time and median time the module reported for itself (None for wait_for)."""
    measured = [timed_task(lab, workdir, HOST, name, task, check) for dummy in range(runs)]
    module_times = [module for dummy, module in measured if module is not None]
    return statistics.median(t for t, dummy in measured), statistics.median(module_times) if module_times else None


def _targets(addresses):
    targets = []
    for address in addresses:
        targets.append({'address': address, 'port': 7844, 'check': 'tls', 'server_name': config.SERVER_NAMES['tcp']})
        targets.append({'address': address, 'port': 7844, 'check': 'quic', 'server_name': config.SERVER_NAMES['udp']})
    return json.dumps(targets)


def main(runs):
    lab = Lab(os.path.join(config.REPO, '.build', 'bench-lab'))
    lab.up('none:1', bench=200)
    workdir = tempfile.mkdtemp(prefix='bench-probe-')
    figures = {}
    try:
        addresses = lab.state['bench_addresses']
        for count in (20, 200):
            chosen = addresses[:count]
            dropped = chosen[::2]
            lab.reset()
            lab.fault('addresses', 'drop', *dropped)
            # TLS and TCP rows for the answering half, QUIC too: 3 ok results per answering address.
            expected_ok = 3 * (count - len(dropped))
            figures[('edge_probe', count)] = _time(
                lab, workdir, 'probe%d' % count, EDGE_PROBE.format(targets=_targets(chosen), timeout=TIMEOUT, ca=lab.ca),
                runs, EDGE_PROBE_CHECK.format(expected_ok=expected_ok))
            if count == 20:
                figures[('wait_for', count)] = _time(lab, workdir, 'wait_for%d' % count, WAIT_FOR.format(
                    addresses=json.dumps(chosen), timeout=TIMEOUT), runs)
                figures['dropped'] = len(dropped)
    finally:
        lab.down()
    loop = figures[('wait_for', 20)][0]
    (probe20, module20), (probe200, module200) = figures[('edge_probe', 20)], figures[('edge_probe', 200)]
    bound = figures['dropped']
    print('\n== probe: edge addresses on 7844, half dropped at the edge, timeout %ds, median of %d runs ==' % (TIMEOUT, runs))
    print('%-52s %8.2fs' % ('ansible.builtin.wait_for loop, TCP only, 20 addresses', loop))
    print('%-52s %8.2fs  (probing on the host: %.2fs)' % ('edge_probe, TCP + TLS + QUIC, 20 addresses', probe20, module20))
    print('%-52s %8.2fs  (probing on the host: %.2fs)' % ('edge_probe, TCP + TLS + QUIC, 200 addresses', probe200, module200))
    print('ratio wait_for / edge_probe (20): %.1fx; physical bound %dx (dropped targets), so %.0f%% of it (goal >= 80%%)'
          % (loop / probe20, bound, 100.0 * loop / probe20 / bound))
    print('edge_probe task within timeout + 1 s (%.1fs)? 20: %s, 200: %s (the task includes Ansible shipping the module'
          ' and %d results over SSH)' % (TIMEOUT + 1, probe20 <= TIMEOUT + 1, probe200 <= TIMEOUT + 1, 3 * 200))
