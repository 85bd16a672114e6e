# -*- coding: utf-8 -*-
"""tunnelwall.cloudflared.site on 1, 4 and 16 lab hosts with forks 8: wall time, time per host, DNS queries.

Each size gets a lab of its own (half firewalld, half ufw; 1 = one firewalld host). A run is the whole site
playbook with default deny - resolve, probe, apply, verify, persist, report - on firewalls as the lab made them,
with an empty plan cache. The DNS queries counted are the controller's (the hosts' own DNS checks come from
their addresses and are left out): resolving once per play means the same number whatever the fleet's size.
With forks 8 the floor for 16 hosts is twice the time of one - when the hosts have CPUs of their own. In the lab
they share the machine's with the controller, so the machine's busy CPU time per run is printed too: divided by
the number of cores it is a second floor, which a CPU-bound run cannot beat.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from tests.lab import config
from tests.lab.lab import Lab

SIZES = {1: 'firewalld:1', 4: 'firewalld:2,ufw:2', 16: 'firewalld:8,ufw:8'}
FORKS = 8


def _busy_seconds():
    """CPU time the whole machine spent busy so far (every core), from /proc/stat."""
    with open('/proc/stat', encoding='ascii') as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def _site(lab, workdir, run):
    home = tempfile.mkdtemp(prefix='home-', dir=workdir)  # an empty plan cache for every run
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), 'tunnelwall.cloudflared.site',
               '-i', lab.inventory, '-f', str(FORKS), '-e', 'egress_firewall_default_deny=true',
               '-e', '{"egress_firewall_probe_ca_path": "{{ tunnelwall_lab_ca }}"}',
               '-e', 'tunnelwall_report_dir=%s' % os.path.join(workdir, 'report')]
    lab.dns.clear_log()
    busy = _busy_seconds()
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=config.REPO,
                            env=dict(os.environ, ANSIBLE_HOME=home))
    seconds = time.monotonic() - started
    busy = _busy_seconds() - busy
    if result.returncode:
        raise SystemExit('site playbook failed:\n%s%s' % (result.stdout[-3000:], result.stderr[-2000:]))
    return seconds, busy, len(lab.controller_queries())


def main(runs):
    figures = {}
    workdir = tempfile.mkdtemp(prefix='bench-fleet-')
    for size, spec in SIZES.items():
        lab = Lab(os.path.join(config.REPO, '.build', 'bench-lab'))
        lab.up(spec)
        try:
            times, busy, queries = [], [], set()
            for run in range(runs):
                lab.reset_firewalls()
                seconds, cpu, count = _site(lab, workdir, run)
                times.append(seconds)
                busy.append(cpu)
                queries.add(count)
            figures[size] = (statistics.median(times), statistics.median(busy), queries)
        finally:
            lab.down()
    print('\n== fleet: tunnelwall.cloudflared.site, default deny, forks %d, median of %d runs ==' % (FORKS, runs))
    cores = os.cpu_count()
    print('%-6s %10s %10s %14s %12s %18s' % ('hosts', 'wall', 'per host', 'DNS queries', 'vs 1 host',
                                             'machine CPU busy'))
    for size, (seconds, busy, queries) in figures.items():
        counted = '/'.join(str(count) for count in sorted(queries))
        print('%-6d %9.1fs %9.2fs %14s %11.2fx %9.1f CPU-s (>= %.1fs on %d cores)'
              % (size, seconds, seconds / size, counted, seconds / figures[1][0], busy, busy / cores, cores))
    print('16 hosts / 1 host: %.2fx (floor with forks %d: 2x; goal < 3x)' % (figures[16][0] / figures[1][0], FORKS))
