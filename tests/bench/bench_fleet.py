# -*- coding: utf-8 -*-
"""tunnelwall.cloudflared.site on 1, 4 and 16 lab hosts with forks 8: wall time, time per host, DNS queries, module runs.

Each size gets a lab of its own (half firewalld, half ufw; 1 = one firewalld host). A run is the whole site
playbook with default deny - resolve, probe, apply, verify, persist, report - on firewalls as the lab made them,
with an empty plan cache. The DNS queries counted are the controller's (the hosts' own DNS checks come from
their addresses and are left out): resolving once per play means the same number whatever the fleet's size.
With forks 8 the floor for 16 hosts is twice the time of one - when the hosts have CPUs of their own. In the lab
they share the machine's with the controller, so the machine's busy CPU time per run is printed too: divided by
the number of cores it is a second floor, which a CPU-bound run cannot beat. Module executions per host are counted
from ansible-playbook -vvv: every module run on a host is one SSH exec of its Python (pipelining), so that count is
what each host paid in AnsiballZ runs.

The controller's cost is measured apart from the hosts': the CPU time of ansible-playbook's process tree (its
forked workers and their ssh clients, reaped by it), from getrusage(RUSAGE_CHILDREN) around the run - the lab
hosts' sshd and module Pythons are children of the lab, not of this process, so they are not in it. Divided by the
number of hosts it is the figure to size a controller with (README, "Sizing the controller"). -vvv (to count the
module runs) adds a little of its own.
"""

from __future__ import annotations

import collections
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from tests.lab import config
from tests.lab.lab import Lab

SIZES = {1: 'firewalld:1', 4: 'firewalld:2,ufw:2', 16: 'firewalld:8,ufw:8'}
FORKS = 8
# With pipelining a module run is one `ssh ... '/bin/sh -c /usr/bin/python3'` on its host (the module on its stdin).
MODULE_EXEC = re.compile(r"^<(?P<host>[^>]+)> SSH: EXEC ssh .*'/bin/sh -c [^']*python[0-9.]*[^']*'$", re.M)


def _busy_seconds():
    """CPU time the whole machine spent busy so far (every core), from /proc/stat."""
    with open('/proc/stat', encoding='ascii') as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def children_cpu_seconds():
    """User + system CPU time of this process's waited-for children and their descendants so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def controller_run(command, **kwargs):
    """subprocess.run(command) and the CPU seconds its whole process tree used on this machine."""
    before = children_cpu_seconds()
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    return result, children_cpu_seconds() - before


def _site(lab, workdir, run):
    home = tempfile.mkdtemp(prefix='home-', dir=workdir)  # an empty plan cache for every run
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), 'tunnelwall.cloudflared.site',
               '-i', lab.inventory, '-f', str(FORKS), '-e', 'egress_firewall_default_deny=true',
               '-e', '{"egress_firewall_probe_ca_path": "{{ tunnelwall_lab_ca }}"}',
               '-e', 'tunnelwall_report_dir=%s' % os.path.join(workdir, 'report'), '-vvv']
    lab.dns.clear_log()
    busy = _busy_seconds()
    started = time.monotonic()
    result, controller = controller_run(command, cwd=config.REPO, env=dict(os.environ, ANSIBLE_HOME=home))
    seconds = time.monotonic() - started
    busy = _busy_seconds() - busy
    if result.returncode:
        raise SystemExit('site playbook failed:\n%s%s' % (result.stdout[-3000:], result.stderr[-2000:]))
    runs = collections.Counter(match.group('host') for match in MODULE_EXEC.finditer(result.stdout))
    per_host = sorted(set(runs.values())) or [0]
    return seconds, busy, len(lab.controller_queries()), per_host, controller


def main(runs):
    figures = {}
    workdir = tempfile.mkdtemp(prefix='bench-fleet-')
    for size, spec in SIZES.items():
        lab = Lab(os.path.join(config.REPO, '.build', 'bench-lab'))
        lab.up(spec)
        try:
            times, busy, queries, executions, controller = [], [], set(), set(), []
            for run in range(runs):
                lab.reset_firewalls()
                seconds, cpu, count, per_host, controller_cpu = _site(lab, workdir, run)
                executions.update(per_host)
                times.append(seconds)
                busy.append(cpu)
                queries.add(count)
                controller.append(controller_cpu)
            figures[size] = (statistics.median(times), statistics.median(busy), queries, executions,
                             statistics.median(controller))
        finally:
            lab.down()
    print('\n== fleet: tunnelwall.cloudflared.site, default deny, forks %d, median of %d runs ==' % (FORKS, runs))
    cores = os.cpu_count()
    header = ('hosts', 'wall', 'per host', 'DNS queries', 'module runs/host', 'vs 1 host', 'CPU-s/host',
              'controller CPU-s/host', 'machine CPU busy')
    print('%-6s %10s %10s %14s %16s %12s %14s %22s %18s' % header)
    for size, (seconds, busy, queries, executions, controller) in figures.items():
        counted = '/'.join(str(count) for count in sorted(queries))
        modules = '/'.join(str(count) for count in sorted(executions))
        print('%-6d %9.1fs %9.2fs %14s %16s %11.2fx %13.2fs %21.2fs %9.1f CPU-s (>= %.1fs on %d cores)'
              % (size, seconds, seconds / size, counted, modules, seconds / figures[1][0], busy / size,
                 controller / size, busy, busy / cores, cores))
    if 16 in figures and 1 in figures:  # SIZES can be narrowed for a quick controller figure
        print('16 hosts / 1 host: %.2fx (floor with forks %d: 2x; goal < 3x)' % (figures[16][0] / figures[1][0], FORKS))
