# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables_egress's rendering: an egress Request as one nft table, and the files that load it at boot.

Pure functions of plain data (the Request of egress_request, the resolvers to allow); nftables_apply does the I/O.
The table is ``inet NAME`` - one table for both families, the only object the module owns - with:

- one interval set per (label, protocol, port, family): ``tunnel_udp_7844_v4`` holds every IPv4 tunnel destination of
  UDP 7844, widened prefixes included (an interval set stores a prefix as a range, however wide);
- one output base chain, priority ``filter``, policy accept; one accept rule per set; under a default deny, first
  what the host itself needs (loopback, established and related, neighbour discovery, DHCP, MLD, DNS, metadata) and
  last a reject - TCP reset for TCP, ICMP administratively prohibited for the rest.

The script starts with ``table inet NAME`` / ``delete table inet NAME``, so ``nft -f`` replaces the whole table in one
kernel transaction, whether it existed or not, and loading it twice gives the same table.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ipaddress
import os

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request, egress_revert

FAMILY = 'inet'
CHAIN = 'output'
CONFIG_DIR = '/' + egress_revert.NFTABLES_DIR
SYSTEMD_DIR = '/etc/systemd/system'
# The ownership marker: the table's comment. A table of the same name without it is someone else's (Debian's own
# ``inet filter``): the module refuses to touch it.
MARKER = 'tunnelwall.cloudflared.nftables_egress %s'
BOOT_UNIT = 'tunnelwall-boot-revert.service'  # egress_transaction's boot check: it runs before our unit
# Neighbour discovery a host sends: without it, IPv6 stops working on the link at once.
ND_TYPES = ('nd-router-solicit', 'nd-neighbor-solicit', 'nd-neighbor-advert')
# A TCP connection opened before connection tracking was on in this network namespace - on a host with no firewall,
# our table's first `ct` expression turns it on - is picked up mid-stream: its next packet is `ct state new`, not
# established, and would be rejected. The Ansible session running this very module is one. A packet without SYN opens
# no connection (the peer answers it with a reset), so letting such packets out keeps running connections alive
# without letting a new one out; conntrack marks the connection established once the reply passes.
PICKED_UP = 'tcp flags & syn == 0 ct state new accept'
ADDRESS = {'ipv4': ('ip', 'ipv4_addr', 'v4'), 'ipv6': ('ip6', 'ipv6_addr', 'v6')}

# One accept rule of the table: what it is for, and the set of destinations it matches.
Allowance = collections.namedtuple('Allowance', 'label protocol port family destinations')
# The files of one table: the ruleset loaded at boot, the unit that loads it and the drop-in that pulls the unit in.
Paths = collections.namedtuple('Paths', 'ruleset unit dropin record')


def render_problem(request):
    """What nft cannot name (``name`` becomes an nft identifier, which starts with a letter), or None."""
    if not request.name[0].isalpha():
        return 'name=%r: nft table names start with a letter' % request.name
    return None


def table(name):
    """The table as nft names it: FAMILY NAME (``inet NAME``)."""
    return '%s %s' % (FAMILY, name)


def paths(name, config_dir=CONFIG_DIR, systemd_dir=SYSTEMD_DIR):
    """Where NAME's files live; unit and drop-in are None where systemd's directory is missing (no systemd)."""
    unit = egress_revert.NFTABLES_UNIT % name
    return Paths(os.path.join(config_dir, egress_revert.NFTABLES_RULESET % name),
                 os.path.join(systemd_dir, unit + '.service') if systemd_dir else None,
                 os.path.join(systemd_dir, 'sysinit.target.d', unit + '.conf') if systemd_dir else None,
                 os.path.join(config_dir, egress_revert.RECORD_NAME))


def _collapsed(networks):
    """Overlapping or adjacent destinations as the fewest prefixes: an interval set refuses overlapping elements."""
    parsed = [ipaddress.ip_network(n) for n in networks]
    return tuple(str(n) if n.prefixlen != n.max_prefixlen else str(n.network_address)
                 for n in ipaddress.collapse_addresses(parsed))


def allowances(request, nameservers):
    """Every accept of the request, in rule order, destinations collapsed; one entry per set of the table.

    ``nameservers`` are egress_request.nameservers(): the resolvers DNS is allowed to, none when it is not allowed.
    """
    wanted = collections.OrderedDict()

    def add(label, protocol, port, ipv4, ipv6):
        """Add ``ipv4``/``ipv6`` destinations to the allowance of (``label``, ``protocol``, ``port``) of each family."""
        for family, networks in (('ipv4', ipv4), ('ipv6', ipv6)):
            if networks:
                key = (label, protocol, port, family)
                wanted[key] = wanted.get(key, ()) + tuple(networks)

    if request.state != 'present':
        return []
    for protocol in egress_request.DNS_PROTOCOLS:
        add('dns', protocol, egress_request.DNS_PORT, [s for s in nameservers if ':' not in s], [s for s in nameservers if ':' in s])
    add('metadata', 'tcp', egress_request.METADATA_PORT, *egress_request.metadata_destinations(request))
    for rule in request.rules:
        add(rule.purpose, rule.protocol, rule.port, rule.ipv4, rule.ipv6)
    for extra in request.extra_allow:
        add('extra', extra.protocol, extra.port, extra.ipv4, extra.ipv6)
    return [Allowance(label, protocol, port, family, _collapsed(networks))
            for (label, protocol, port, family), networks in wanted.items()]


def set_name(allowance):
    """The nft set of one allowance: PURPOSE_PROTOCOL_PORT_v4|v6 (what egress_applied reads back)."""
    return '%s_%s_%d_%s' % (allowance.label, allowance.protocol, allowance.port, ADDRESS[allowance.family][2])


def _set(allowance):
    return ('\tset %s {\n\t\ttype %s\n\t\tflags interval\n\t\telements = { %s }\n\t}\n'
            % (set_name(allowance), ADDRESS[allowance.family][1], ', '.join(allowance.destinations)))


def chain_rules(request, sets):
    """The output chain's rules, in order."""
    rules = []
    if request.default_deny:
        rules += ['oifname "lo" accept', 'ct state established,related accept', PICKED_UP,
                  'icmpv6 type { %s } accept' % ', '.join(ND_TYPES)]
        if request.allow_mld:
            # egress_request's numbers (nft lists them as mld-listener-report, -done, mld2-listener-report).
            rules.append('icmpv6 type { %s } accept' % ', '.join(str(t) for t in egress_request.MLD_TYPES))
        if request.allow_dhcp:
            rules += ['meta nfproto %s udp sport %d udp dport %d accept' % (family, client, server)
                      for family, client, server in egress_request.DHCP]
    rules += ['%s daddr @%s %s dport %d accept' % (ADDRESS[a.family][0], set_name(a), a.protocol, a.port) for a in sets]
    if request.default_deny:
        rules += ['meta l4proto tcp reject with tcp reset', 'reject with icmpx type admin-prohibited']
    return rules


def render(request, sets):
    """The nft script that makes table ``inet NAME`` exactly what the request asks ('' for state=absent).

    ``sets`` is ``allowances(request, nameservers)``.
    """
    if request.state != 'present':
        return ''
    name = table(request.name)
    return ''.join([
        'table %s\ndelete table %s\n' % (name, name),  # create-then-delete: the definition below replaces it whole
        'table %s {\n' % name,
        '\tcomment "%s"\n' % marker(request.name),
        ''.join(_set(a) for a in sets),
        '\tchain %s {\n\t\ttype filter hook output priority filter; policy accept;\n' % CHAIN,
        ''.join('\t\t%s\n' % rule for rule in chain_rules(request, sets)),
        '\t}\n}\n'])


def marker(name):
    """The comment on the table that marks it as this module's for ``name``."""
    return MARKER % name


def owned_listing(text, name):
    """True when ``nft list table`` text shows our marker (nft's JSON omits table comments, its text has them)."""
    return '\tcomment "%s"' % marker(name) in text.split('\n\tchain ', 1)[0].split('\n\tset ', 1)[0]


def header(module_name, name, unit):
    """The comment lines at the top of the ruleset file: who wrote it and what loads it at boot."""
    loader = ('loaded at boot by %s' % unit) if unit else 'load it at boot with your nftables service'
    return ('# Written by %s (name %s); %s.\n# Changes made here are replaced by its next run.\n'
            % (module_name, name, loader))


def unit_text(name, nft, ruleset):
    """A oneshot unit that loads the table early, before any network is configured, and after nftables.service.

    After nftables.service because the distribution's ruleset usually begins with ``flush ruleset``, which would
    remove our table if it loaded later; for the same reason it follows that service: ``PartOf=`` restarts it with
    nftables.service and ``ReloadPropagatedFrom=`` reloads it (``ExecReload=``, the same load) after a
    ``systemctl reload nftables``. After the boot check (egress_transaction), which may first put back a ruleset a
    reboot left unconfirmed - or remove it, hence ``ConditionPathExists=``. Nothing on stop: a shutdown must not open
    egress on the way down.
    """
    return '\n'.join([
        '# Written by tunnelwall.cloudflared.nftables_egress (name %s).' % name,
        '[Unit]',
        'Description=tunnelwall: cloudflared egress allow-list (nftables table %s)' % table(name),
        'DefaultDependencies=no',
        'Wants=network-pre.target',
        'Before=network-pre.target shutdown.target',
        'After=local-fs.target nftables.service %s' % BOOT_UNIT,
        'PartOf=nftables.service',
        'ReloadPropagatedFrom=nftables.service',
        'Conflicts=shutdown.target',
        'ConditionPathExists=%s' % ruleset,
        '',
        '[Service]',
        'Type=oneshot',
        'RemainAfterExit=yes',
        'ExecStart=%s -f %s' % (nft, ruleset),
        'ExecReload=%s -f %s' % (nft, ruleset),
        ''])


def dropin_text(name, unit):
    """sysinit.target wants the unit: a plain file where ``systemctl enable`` would make a symlink, so the pending
    record (which holds file contents) can restore or remove it like the others."""
    return '# Written by tunnelwall.cloudflared.nftables_egress (name %s).\n[Unit]\nWants=%s\n' % (name, unit)


def restore_command(nft, files, name):
    """argv that makes the live table what the ruleset file says: load it, or delete the table when there is none.

    The dead-man revert runs it after putting the files back; it must work without the module, so it is a shell line.
    """
    script = ('if [ -e "$1" ]; then exec "$3" -f "$1"; fi; '
              'if "$3" list table %s "$2" >/dev/null 2>&1; then exec "$3" delete table %s "$2"; fi' % (FAMILY, FAMILY))
    return ['/bin/sh', '-c', script, 'tunnelwall-nftables-restore', files.ruleset, name, nft]
