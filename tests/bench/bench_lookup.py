# -*- coding: utf-8 -*-
"""edge_endpoints versus community.general.dig, against one DNS server delaying every answer.

Both resolve the default name set (the global v2 SRV record, then A and
AAAA of region1, region2, api.cloudflare.com and update.argotunnel.com);
dig is used as users write it, one lookup per name and record type. Each
playbook stamps the time before and after its resolution tasks, so the
figures are the resolution as Ansible runs it (task overhead included),
and ansible-playbook's whole wall time is shown beside them.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tests.support import edge_zone
from tests.support.dns_fixture import DnsServer

DELAY_MS = 50
HOSTS = ['region1.v2.argotunnel.com', 'region2.v2.argotunnel.com', 'api.cloudflare.com', 'update.argotunnel.com']

DIG_PLAYBOOK = '''
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    dig_server: "@{server}"
  tasks:
    - ansible.builtin.set_fact:
        started: "{{{{ now().timestamp() }}}}"
    - name: SRV record of the tunnel edge
      ansible.builtin.set_fact:
        edge_srv: "{{{{ query('community.general.dig', '_v2-origintunneld._tcp.argotunnel.com', dig_server, qtype='SRV', port={port}) }}}}"
    - name: IPv4 addresses
      ansible.builtin.set_fact:
        edge_v4: "{{{{ (edge_v4 | default([])) + query('community.general.dig', item, dig_server, qtype='A', port={port}) }}}}"
      loop: {hosts}
    - name: IPv6 addresses
      ansible.builtin.set_fact:
        edge_v6: "{{{{ (edge_v6 | default([])) + query('community.general.dig', item, dig_server, qtype='AAAA', port={port}) }}}}"
      loop: {hosts}
    - ansible.builtin.copy:
        dest: "{out}"
        content: "{{{{ {{'seconds': now().timestamp() - (started | float), 'addresses': edge_v4 + edge_v6}} | to_json }}}}"
'''

EDGE_PLAYBOOK = '''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.set_fact:
        started: "{{{{ now().timestamp() }}}}"
    - name: Egress plan
      ansible.builtin.set_fact:
        plan: "{{{{ lookup('tunnelwall.cloudflared.edge_endpoints', nameservers=['{server}'], port={port},
                    trusted_ranges={ranges}, cache=false) }}}}"
    - ansible.builtin.copy:
        dest: "{out}"
        content: "{{{{ {{'seconds': now().timestamp() - (started | float),
                       'addresses': plan.endpoints | map(attribute='ipv4') | flatten
                                    + plan.endpoints | map(attribute='ipv6') | flatten}} | to_json }}}}"
'''

BASELINE_PLAYBOOK = '''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.set_fact:
        started: "{{{{ now().timestamp() }}}}"
    - name: A task that resolves nothing
      ansible.builtin.set_fact:
        nothing: "{{{{ 1 }}}}"
    - ansible.builtin.copy:
        dest: "{out}"
        content: "{{{{ {{'seconds': now().timestamp() - (started | float), 'addresses': []}} | to_json }}}}"
'''


def _run(workdir, name, template, dns, runs):
    out = os.path.join(workdir, name + '.json')
    playbook = os.path.join(workdir, name + '.yml')
    with open(playbook, 'w', encoding='utf-8') as handle:
        handle.write(template.format(server=dns.address, port=dns.port, hosts=json.dumps(HOSTS), out=out,
                                     ranges=json.dumps(list(edge_zone.LAB_RANGES)).replace('"', "'")))
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', playbook,
               '-e', 'ansible_python_interpreter=%s' % sys.executable]
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING='False')
    inner, outer, addresses = [], [], None
    for dummy in range(runs):
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        outer.append(time.monotonic() - started)
        if result.returncode != 0:
            raise SystemExit('%s failed:\n%s%s' % (name, result.stdout, result.stderr))
        with open(out, encoding='utf-8') as handle:
            report = json.load(handle)
        inner.append(report['seconds'])
        addresses = sorted(set(report['addresses']))
    return statistics.median(inner), statistics.median(outer), addresses


IN_PROCESS = """
import json, sys, time
from ansible.plugins.loader import init_plugin_loader, lookup_loader
init_plugin_loader()
started = time.perf_counter()
lookup = lookup_loader.get('tunnelwall.cloudflared.edge_endpoints')
loaded = time.perf_counter()
options = dict(nameservers=[sys.argv[1]], port=int(sys.argv[2]), trusted_ranges=json.loads(sys.argv[3]), cache=False)
runs = []
for dummy in range(int(sys.argv[4])):
    begin = time.perf_counter()
    lookup.run([], variables={}, **options)
    runs.append(time.perf_counter() - begin)
print(json.dumps({'load': loaded - started, 'runs': runs}))
"""


def _in_process(dns, runs):
    """Plugin load (its imports) and resolutions, timed inside one fresh Python process."""
    result = subprocess.run([sys.executable, '-c', IN_PROCESS, dns.address, str(dns.port),
                             json.dumps(list(edge_zone.LAB_RANGES)), str(runs)],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    return report['load'], statistics.median(report['runs'])


# What Ansible has imported before it loads any lookup plugin: left out of the plugin's own load time.
PRELOADED = 'import ansible.constants, ansible.errors, ansible.plugins.lookup, ansible.utils.display'
PLUGIN_MODULE = 'ansible_collections.tunnelwall.cloudflared.plugins.lookup.edge_endpoints'
IMPORT_GOAL = 0.1


def import_time(runs):
    """Seconds to import the lookup plugin (``python -X importtime``, cumulative, Ansible's own modules
    already loaded), median of ``runs`` fresh processes; and the slowest of its imports in the last one."""
    samples, slowest = [], []
    for dummy in range(runs):
        result = subprocess.run([sys.executable, '-X', 'importtime', '-c', '%s; import %s' % (PRELOADED, PLUGIN_MODULE)],
                                capture_output=True, text=True, check=True)
        lines = [line.split('|') for line in result.stderr.splitlines() if line.startswith('import time:')]
        rows = [(int(fields[1]) / 1e6, fields[2].rstrip()) for fields in lines[1:] if len(fields) == 3]
        mine = [index for index, (dummy_time, name) in enumerate(rows) if name.strip() == PLUGIN_MODULE]
        if not mine:
            raise SystemExit('python -X importtime did not report %s:\n%s' % (PLUGIN_MODULE, result.stderr[-2000:]))
        samples.append(rows[mine[0]][0])
        # The plugin's own imports are the lines after Ansible's, up to the plugin's line.
        start = max(index for index, (dummy_time, name) in enumerate(rows[:mine[0]])
                    if name.strip() in ('ansible.utils.display', 'ansible.plugins.lookup', 'ansible.constants',
                                        'ansible.errors')) + 1
        slowest = sorted(rows[start:mine[0]], reverse=True)[:3]
    return statistics.median(samples), slowest


def main(runs):
    workdir = tempfile.mkdtemp(prefix='bench-lookup-')
    dns = DnsServer(workdir, listen=('127.0.0.1',)).start()
    try:
        dns.set(delay_ms=DELAY_MS)
        baseline, baseline_wall, dummy = _run(workdir, 'baseline', BASELINE_PLAYBOOK, dns, runs)
        dig, dig_wall, dig_addresses = _run(workdir, 'dig', DIG_PLAYBOOK, dns, runs)
        edge, edge_wall, edge_addresses = _run(workdir, 'edge_endpoints', EDGE_PLAYBOOK, dns, runs)
        load, resolution = _in_process(dns, runs)
        imported, slowest = import_time(runs)
    finally:
        dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if dig_addresses != edge_addresses:
        raise SystemExit('the two resolved different addresses:\n dig: %s\n edge_endpoints: %s'
                         % (dig_addresses, edge_addresses))
    round_trip = DELAY_MS / 1000.0
    print('\n== lookup: default name set, DNS answers delayed %d ms, median of %d runs ==' % (DELAY_MS, runs))
    print('%-34s %12s %22s' % ('', 'resolution', 'ansible-playbook wall'))
    print('%-34s %11.3fs %21.3fs' % ('community.general.dig (9 lookups)', dig, dig_wall))
    print('%-34s %11.3fs %21.3fs' % ('tunnelwall edge_endpoints', edge, edge_wall))
    print('%-34s %11.3fs %21.3fs' % ('a task resolving nothing', baseline, baseline_wall))
    net_dig, net_edge = dig - baseline, edge - baseline
    print('ratio dig / edge_endpoints: %.1fx net of Ansible\'s task overhead (goal >= 5x); %.1fx with it; '
          '%.2fx for the whole ansible-playbook run' % (net_dig / net_edge, dig / edge, dig_wall / edge_wall))
    print('edge_endpoints net of task overhead: %.3fs = %.1f round trips of %d ms (goal <= 2), of which '
          'importing dnspython and netaddr is part' % (net_edge, net_edge / round_trip, DELAY_MS))
    print('edge_endpoints inside one process: lookup_loader.get() (Ansible\'s plugin loader and the plugin) %.3fs once; '
          'one resolution %.3fs = %.1f round trips' % (load, resolution, resolution / round_trip))
    print('loading the plugin: %.3fs (python -X importtime, median of %d; goal < %.1fs; dnspython and netaddr are '
          'imported at the first resolution, not here); slowest: %s'
          % (imported, runs, IMPORT_GOAL, ', '.join('%s %.3fs' % (name.strip(), took) for took, name in slowest)))
    print('both resolved the same %d addresses' % len(edge_addresses))


if __name__ == '__main__':
    # The import time alone, in any venv (make bench runs main() in .venv/bench).
    TOOK, SLOWEST = import_time(int(os.environ.get('BENCH_RUNS', '7')))
    print('loading the plugin: %.3fs (goal < %.1fs); slowest imports: %s'
          % (TOOK, IMPORT_GOAL, ', '.join('%s %.3fs' % (name.strip(), took) for took, name in SLOWEST)))
