# -*- coding: utf-8 -*-
"""nftables_egress versus the ``nft`` command loop users write today, in the lab.

The rule set is bench_firewall's: 20 edge addresses on TCP and UDP 7844, so 40 rules. On one lab host of kind
``nftables`` (nft only; neither firewalld nor ufw):

- the loop: an ``ansible.builtin.command: nft ...`` task each for the table, the output base chain with its hook,
  the two sets (one per protocol) and the two rules that use them, then ``nft add element`` once per address and
  protocol (a loop of 40 items, one command each). ``nft add`` of a table, chain, set or element that exists
  already succeeds and changes nothing, but ``nft add rule`` appends the rule again, so the loop empties the
  chain before it adds the rules - what a careful user writes to make a rerun leave one copy of each;
- ``tunnelwall.cloudflared.nftables_egress``: one task with the whole rule set.

Each side gets a first apply on the host as the lab made it (empty ruleset, fresh /etc) and a rerun. The
loop cannot tell that nothing is left to do, so its rerun is the same playbook again - what users run - and
every task of it runs its ``nft`` command and reports "changed". The module's rerun must report
``changed=false`` (asserted). After every run the ruleset must hold both sets with all 20 addresses, and a
rerun must leave the ruleset byte-identical (both asserted), so that neither side is timed doing less than
the job. Figures are the tasks' own time (the SSH connection is opened before, see timed.py), median of runs;
each run times both sides in turn, so that a change of the machine's load falls on both. Also printed: the time
of one ``ansible.builtin.command`` task that does nothing - the floor any single task pays, which bounds the
ratio - and the load average, since the lab's host shares the machine's CPUs with the controller.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import statistics
import sys
import tempfile

from tests.bench.timed import timed_task
from tests.lab import config
from tests.lab.lab import Lab

ADDRESSES = 20
PROTOCOLS = ('tcp', 'udp')
PORT = 7844
LOOP_TABLE = 'bench'
GOAL = 20
# What the module writes outside /run and its own table: each must be private to the lab host (see _require_private).
MODULE_WRITES = ('/etc/nftables.d', '/etc/systemd/system')

NFT_LOOP = '''    - name: Create the table
      ansible.builtin.command: nft add table inet {table}
    - name: Create the output chain with its hook
      ansible.builtin.command: nft add chain inet {table} output '{{ type filter hook output priority 0 ; policy accept ; }}'
    - name: Create one set per protocol
      ansible.builtin.command: nft add set inet {table} tunnel_{{{{ item }}}}_{port}_v6 '{{ type ipv6_addr ; flags interval ; }}'
      loop: {protocols}
    - name: Empty the chain, so that a rerun does not append the rules twice
      ansible.builtin.command: nft flush chain inet {table} output
    - name: Allow the addresses of each set
      ansible.builtin.command: nft add rule inet {table} output ip6 daddr @tunnel_{{{{ item }}}}_{port}_v6 {{{{ item }}}} dport {port} accept
      loop: {protocols}
    - name: Add the addresses, one nft command each
      ansible.builtin.command: nft add element inet {table} tunnel_{{{{ item.1 }}}}_{port}_v6 '{{ {{{{ item.0 }}}} }}'
      loop: '{{{{ {addresses} | product({protocols}) | list }}}}'
'''

NFTABLES_EGRESS = '''    - name: One nftables_egress call
      tunnelwall.cloudflared.nftables_egress:
        rules: {rules}
      register: egress
'''

# Runs after the timed part: the first apply must change the table, the rerun nothing; the result is kept.
NFTABLES_EGRESS_CHECK = '''    - name: The first apply changes the table, the rerun nothing
      ansible.builtin.assert:
        that: egress.changed == {changed}
    - ansible.builtin.copy:
        dest: "{result}"
        content: "{{{{ egress | to_json }}}}"
      delegate_to: localhost
'''

# What a task that does nothing costs: the floor under the module's figure (a loop's items share one task's
# worker and payload, so they each cost less).
FLOOR = '''    - name: One command that does nothing
      ansible.builtin.command: "true"
'''


def plan_rules(addresses):
    """The egress plan's rules for the bench addresses, as bench_firewall gives them to ufw_egress/firewalld_egress."""
    return [{'purpose': 'tunnel', 'protocol': protocol, 'port': PORT, 'ipv4': [],
             'ipv6': ['%s/128' % address for address in addresses]} for protocol in PROTOCOLS]


def element_ranges(element):
    """One element of ``nft -j`` set output -> (first, last) address, whatever form nft chose for it."""
    if isinstance(element, str):
        address = ipaddress.ip_address(element)
        return address, address
    if 'elem' in element:  # an element with options (counter, timeout...) wraps its value
        return element_ranges(element['elem']['val'])
    if 'prefix' in element:
        network = ipaddress.ip_network('%s/%d' % (element['prefix']['addr'], element['prefix']['len']))
        return network[0], network[-1]
    if 'range' in element:
        first, last = element['range']
        return ipaddress.ip_address(first), ipaddress.ip_address(last)
    raise ValueError('unexpected nft set element %r' % (element,))


def uncovered(addresses, elements):
    """The addresses that none of the set's elements contains."""
    ranges = [element_ranges(element) for element in elements]
    return [address for address in addresses
            if not any(first <= ipaddress.ip_address(address) <= last for first, last in ranges
                       if first.version == ipaddress.ip_address(address).version)]


def sets_of(listing):
    """``nft -j list table`` output -> {set name: its elements}."""
    return {entry['set']['name']: entry['set'].get('elem', []) for entry in listing['nftables'] if 'set' in entry}


def complete_sets(listing, addresses):
    """The names of the table's sets that hold every address."""
    return sorted(name for name, elements in sets_of(listing).items() if not uncovered(addresses, elements))


def accept_rules(chain_listing):
    """How many rules of an ``nft list chain`` listing accept (the chain's own "policy accept;" is no rule)."""
    return len(re.findall(r' accept$', chain_listing, re.M))


def _identity_in_host(lab, host, path):
    """(path, st_dev, st_ino) of the nearest existing ancestor of ``path`` as the lab host sees its file system."""
    script = ('import os, sys\np = sys.argv[1]\nwhile not os.path.exists(p) and p != "/":\n    p = os.path.dirname(p)\n'
              's = os.stat(p)\nprint(p, s.st_dev, s.st_ino)\n')
    found, dev, ino = lab.exec(host, ['python3', '-c', script, path], check=True).stdout.split()
    return found, int(dev), int(ino)


def _require_private(lab, host):
    """Refuse to run the module unless everything it writes under /etc is the lab host's own copy.

    A lab host without private copies of these would let the module write the machine's own /etc.
    """
    for path in MODULE_WRITES:
        found, dev, ino = _identity_in_host(lab, host, path)
        if os.path.exists(found) and (os.stat(found).st_dev, os.stat(found).st_ino) == (dev, ino):
            raise SystemExit('bench_nftables: %s on lab host %s is the machine\'s own %s: the module would write the '
                             'machine\'s /etc. Needs lab hosts with a private /etc (tests/lab).' % (path, host, found))


def _table_listing(lab, host, table):
    return json.loads(lab.exec(host, ['nft', '-j', 'list', 'table', 'inet', table], check=True).stdout)


def _check_table(lab, host, table, addresses, what):
    """Both protocols' sets hold all the addresses: the run did the whole job."""
    complete = complete_sets(_table_listing(lab, host, table), addresses)
    if len(complete) < len(PROTOCOLS):
        raise SystemExit('%s: table inet %s has %d set(s) with all %d addresses (%s), wanted %d'
                         % (what, table, len(complete), len(addresses), ', '.join(complete) or 'none',
                            len(PROTOCOLS)))


class Side:
    """One way of applying the rules on the bench host: time a first apply and a rerun, check both."""

    name = None

    def __init__(self, lab, workdir, host, addresses):
        self.lab, self.workdir, self.host, self.addresses = lab, workdir, host, addresses
        self.pristine = lab.nft_ruleset(host)

    def reset(self):
        """Back to how the lab made the host: empty ruleset, a fresh /etc (the module's file and unit gone)."""
        self.lab.reset_firewalls([self.host])
        if self.lab.nft_ruleset(self.host) != self.pristine:
            raise SystemExit('bench host %s: cannot get back to the lab\'s ruleset' % self.host)

    def apply(self, rerun):
        """Seconds the tasks took; checks the ruleset afterwards."""
        raise NotImplementedError

    def once(self):
        """(first apply, rerun) seconds; a rerun must leave the ruleset as the first apply made it."""
        self.reset()
        first = self.apply(rerun=False)
        applied = self.lab.nft_ruleset(self.host)
        again = self.apply(rerun=True)
        if self.lab.nft_ruleset(self.host) != applied:
            raise SystemExit('%s: the rerun changed the ruleset' % self.name)
        return first, again


class NftLoop(Side):
    """The command loop: the same playbook for the first apply and the rerun."""

    name = 'nft command loop'

    def apply(self, rerun):
        task = NFT_LOOP.format(table=LOOP_TABLE, port=PORT, protocols=json.dumps(list(PROTOCOLS)),
                               addresses=json.dumps(self.addresses))
        seconds = timed_task(self.lab, self.workdir, self.host, 'nft_loop', task)[0]
        _check_table(self.lab, self.host, LOOP_TABLE, self.addresses, 'nft loop')
        rules = self.lab.exec(self.host, ['nft', 'list', 'chain', 'inet', LOOP_TABLE, 'output'], check=True).stdout
        accepts = accept_rules(rules)
        if accepts != len(PROTOCOLS):
            raise SystemExit('nft loop: the output chain holds %d accept rules, wanted %d:\n%s'
                             % (accepts, len(PROTOCOLS), rules))
        return seconds


class NftablesEgress(Side):
    """The module: changed on the first apply, unchanged on the rerun."""

    name = 'nftables_egress'

    def __init__(self, lab, workdir, host, addresses):
        _require_private(lab, host)
        super().__init__(lab, workdir, host, addresses)

    def apply(self, rerun):
        result = os.path.join(self.workdir, 'nftables_egress_result.json')
        task = NFTABLES_EGRESS.format(rules=json.dumps(plan_rules(self.addresses)))
        check = NFTABLES_EGRESS_CHECK.format(changed=not rerun, result=result)
        seconds = timed_task(self.lab, self.workdir, self.host, 'nftables_egress', task, check)[0]
        with open(result, encoding='utf-8') as handle:
            table = json.load(handle)['table'].split()[-1]  # "inet NAME"
        _check_table(self.lab, self.host, table, self.addresses, 'nftables_egress')
        return seconds


def loop_commands(address_count):
    """How many nft commands (task runs, loop items counted) the loop makes Ansible run on the host.

    Table, chain and flush once each; a set and a rule per protocol; an element per address and protocol.
    """
    return 3 + 2 * len(PROTOCOLS) + address_count * len(PROTOCOLS)


def report(figures, floor, runs, load):
    """The table and the ratio bench_firewall prints, the floor every task pays and the machine's load."""
    lines = ['\n== nftables: %d rules (%d addresses x TCP/UDP %d), median of %d runs ==' % (
        len(PROTOCOLS) * ADDRESSES, ADDRESSES, PORT, runs), '%-32s %12s %12s' % ('', 'first apply', 'rerun')]
    for name, (first, again) in figures.items():
        lines.append('%-32s %11.2fs %11.2fs' % (name, first, again))
    lines.append('one ansible.builtin.command task: %.2fs; the loop runs %d nft commands, nftables_egress 1 module'
                 % (floor, loop_commands(ADDRESSES)))
    if len(figures) == 2:
        (loop, loop_times), (ours, our_times) = figures.items()
        lines.append('ratio %s / %s: %.1fx first apply, %.1fx rerun (goal >= %dx)'
                     % (loop, ours, loop_times[0] / our_times[0], loop_times[1] / our_times[1], GOAL))
    lines.append('load average before/after: %.2f / %.2f (%d CPUs)' % (load[0], load[1], os.cpu_count()))
    return '\n'.join(lines)


def main(runs, sides=('loop', 'module')):
    """Each run times every side in turn, so that a change of the machine's load falls on both."""
    load_before = os.getloadavg()[0]
    lab = Lab(os.path.join(config.REPO, '.build', 'bench-lab'))
    lab.up('nftables:1', bench=ADDRESSES)
    workdir = tempfile.mkdtemp(prefix='bench-nftables-')
    host = sorted(lab.hosts)[0]
    try:
        addresses = lab.state['bench_addresses']
        chosen = [side(lab, workdir, host, addresses) for key, side in (('loop', NftLoop), ('module', NftablesEgress))
                  if key in sides]
        measured = {side.name: ([], []) for side in chosen}
        floor = []
        for dummy in range(runs):
            for side in chosen:
                first, again = side.once()
                measured[side.name][0].append(first)
                measured[side.name][1].append(again)
            floor.append(timed_task(lab, workdir, host, 'floor', FLOOR)[0])
        for side in chosen:
            side.reset()
    finally:
        lab.down()
    figures = {name: (statistics.median(first), statistics.median(again)) for name, (first, again) in measured.items()}
    print(report(figures, statistics.median(floor), runs, (load_before, os.getloadavg()[0])))


if __name__ == '__main__':
    # python -m tests.bench.bench_nftables [loop] [module]: one side alone, e.g. while the other cannot run.
    main(int(os.environ.get('BENCH_NFTABLES_RUNS', '2')), tuple(sys.argv[1:]) or ('loop', 'module'))
