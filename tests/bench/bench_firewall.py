# -*- coding: utf-8 -*-
"""ufw_egress and firewalld_egress versus one module call per rule, as users write it, in the lab.

The same rule set - 20 edge addresses on TCP and UDP 7844, so 40 rules - is
applied on a lab host with ufw by ``community.general.ufw`` in a loop and by
``ufw_egress``, and on a host with firewalld by ``ansible.posix.firewalld``
(one rich rule per destination) in a loop and by ``firewalld_egress``: first
apply on a clean firewall, then a rerun that changes nothing. Figures are
the task's own time (the SSH connection is opened before), median of runs.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile

from tests.bench.timed import timed_task
from tests.lab import config
from tests.lab.lab import Lab

ADDRESSES = 20

UFW_LOOP = '''    - name: One community.general.ufw call per rule
      community.general.ufw:
        rule: allow
        direction: out
        to_ip: "{{{{ item.0 }}}}"
        to_port: "7844"
        proto: "{{{{ item.1 }}}}"
        comment: "bench:tunnel"
      loop: '{{{{ {addresses} | product(["tcp", "udp"]) | list }}}}'
'''

UFW_EGRESS = '''    - name: One ufw_egress call
      tunnelwall.cloudflared.ufw_egress:
        rules: {rules}
'''

FIREWALLD_LOOP = '''    - name: One ansible.posix.firewalld call per rule
      ansible.posix.firewalld:
        rich_rule: 'rule family="ipv6" destination address="{{{{ item.0 }}}}" port port="7844" protocol="{{{{ item.1 }}}}" accept'
        zone: public
        permanent: true
        immediate: true
        state: enabled
      loop: '{{{{ {addresses} | product(["tcp", "udp"]) | list }}}}'
'''

FIREWALLD_EGRESS = '''    - name: One firewalld_egress call
      tunnelwall.cloudflared.firewalld_egress:
        rules: {rules}
'''


def _time(lab, workdir, host, name, task):
    return timed_task(lab, workdir, host, name, task)[0]


def _apply_and_rerun(lab, workdir, host, name, task, runs):
    """Median first apply (on a firewall reset to how the lab made it) and median rerun."""
    first, again = [], []
    for dummy in range(runs):
        lab.reset_firewalls([host])
        first.append(_time(lab, workdir, host, name, task))
        again.append(_time(lab, workdir, host, name, task))
    lab.reset_firewalls([host])
    return statistics.median(first), statistics.median(again)


def main(runs, backends=('ufw', 'firewalld')):
    """Print the figures; ``backends`` picks the comparisons (``main(2, ['firewalld'])`` measures firewalld only)."""
    lab = Lab(os.path.join(config.REPO, '.build', 'bench-lab'))
    lab.up(','.join('%s:1' % b for b in backends), bench=ADDRESSES)
    workdir = tempfile.mkdtemp(prefix='bench-firewall-')
    try:
        addresses = lab.state['bench_addresses']
        rules = json.dumps([{'purpose': 'tunnel', 'protocol': protocol, 'port': 7844, 'ipv4': [],
                             'ipv6': ['%s/128' % a for a in addresses]} for protocol in ('tcp', 'udp')])
        figures = {}
        if 'ufw' in backends:
            figures['community.general.ufw loop'] = _apply_and_rerun(
                lab, workdir, 'ufw1', 'ufw_loop', UFW_LOOP.format(addresses=json.dumps(addresses)), runs)
            figures['ufw_egress'] = _apply_and_rerun(lab, workdir, 'ufw1', 'ufw_egress', UFW_EGRESS.format(rules=rules), runs)
        if 'firewalld' in backends:
            figures['ansible.posix.firewalld loop'] = _apply_and_rerun(
                lab, workdir, 'fw1', 'firewalld_loop', FIREWALLD_LOOP.format(addresses=json.dumps(addresses)), runs)
            figures['firewalld_egress'] = _apply_and_rerun(lab, workdir, 'fw1', 'firewalld_egress',
                                                           FIREWALLD_EGRESS.format(rules=rules), runs)
    finally:
        lab.down()
    print('\n== firewall: %d rules (%d addresses x TCP/UDP 7844), median of %d runs ==' % (2 * ADDRESSES, ADDRESSES, runs))
    print('%-32s %12s %12s' % ('', 'first apply', 'rerun'))
    for name, (first, again) in figures.items():
        print('%-32s %11.2fs %11.2fs' % (name, first, again))
    for ours, loop in (('ufw_egress', 'community.general.ufw loop'), ('firewalld_egress', 'ansible.posix.firewalld loop')):
        if ours not in figures:
            continue
        print('ratio %s / %s: %.1fx first apply, %.1fx rerun (goal >= 10x)'
              % (loop, ours, figures[loop][0] / figures[ours][0], figures[loop][1] / figures[ours][1]))
