# -*- coding: utf-8 -*-
"""Faults of the fake edge: nft rules in the edge namespace and DNS server state.

A fault is a small list such as ``['udp7844', 'drop']`` or ``['dns', 'servfail', 'region1.v2.argotunnel.com']``;
the lab keeps the active ones in its state file and rebuilds the edge's
fault table from them in one atomic ``nft -f`` transaction, so faults add
up and ``reset`` is a single step.
"""

from __future__ import annotations

import ipaddress

from tests.lab import config

MODES = ('drop', 'reject')
# The flows whose first QUIC Initial passed (fault quic-split), one set per family.
QUIC_SEEN_SET = 'quic_seen'
DNS_KINDS = ('servfail', 'nxdomain', 'refused', 'timeout', 'spoof')
# Faults that take one size, and what the size is.
SIZE_FAULTS = {'quic-size': 'the largest UDP payload that passes', 'quic-exact': 'the only UDP payload size that passes',
               'tls-size': 'the longest TCP packet to 7844 that passes, IP header included'}

USAGE = """faults:
  udp7844 drop|reject [HOST]     QUIC to every edge address, from every host or one (reject: ICMP port unreachable)
  tcp7844 drop|reject [HOST]     TCP 7844 to every edge address, from every host or one (reject: TCP reset)
  region NAME [drop|reject]      TCP and UDP to one region's addresses (reject: TCP reset, ICMP prohibited)
  api [drop|reject]              TCP 443 to api.cloudflare.com
  update [drop|reject]           TCP 443 to update.argotunnel.com and update.cloudflare.com
  dns servfail|nxdomain|refused|timeout|spoof [NAME[/TYPE]]   (default: every name)
  dns rotate                     every name moves to a new set of addresses the edge also serves
  dns delay MS                   every DNS answer comes MS milliseconds late
  addresses drop|reject ADDR...  TCP and UDP to these edge addresses (benchmarks: half of the bench addresses)
  quic-size N                    UDP 7844 datagrams with more than N bytes of payload are dropped (an MTU black hole)
  quic-split                     every QUIC Initial after the first of a flow is dropped (a one-datagram middlebox)
  quic-exact N                   UDP 7844 datagrams of any payload size but N are dropped (only one size passes)
  tls-size N                     TCP 7844 packets longer than N bytes (IP header included) are dropped (an MTU black
                                 hole: cloudflared's ~1.4 KB ClientHello dies, a short one passes)"""


class FaultError(ValueError):
    """A fault that does not exist or has bad arguments."""


def parse(args):
    """Validate a fault and return it in its canonical form (a list of strings)."""
    args = [str(a) for a in args]
    if not args:
        raise FaultError('which fault?\n' + USAGE)
    name, rest = args[0], args[1:]
    if name in ('udp7844', 'tcp7844'):
        if len(rest) not in (1, 2) or rest[0] not in MODES:
            raise FaultError('%s takes drop or reject, and optionally a host' % name)
        return [name] + rest  # the lab adds the host's addresses (only it knows them)
    if name == 'region':
        if not 1 <= len(rest) <= 2 or (len(rest) == 2 and rest[1] not in MODES):
            raise FaultError('region takes NAME [drop|reject]')
        try:
            hostname = config.region_hostname(rest[0])
        except config.ConfigError as error:
            raise FaultError(str(error)) from None
        return ['region', hostname, rest[1] if len(rest) == 2 else 'drop']
    if name in config.SERVICE_NAMES:
        if len(rest) > 1 or (rest and rest[0] not in MODES):
            raise FaultError('%s takes [drop|reject]' % name)
        return [name, rest[0] if rest else 'drop']
    if name == 'dns':
        if rest[:1] == ['rotate'] and len(rest) == 1:
            return ['dns', 'rotate']
        if rest[:1] == ['delay'] and len(rest) == 2 and rest[1].isdigit():
            return ['dns', 'delay', rest[1]]
        if 1 <= len(rest) <= 2 and rest[0] in DNS_KINDS:
            target = '*'
            if len(rest) == 2:  # names are case-insensitive, record types are matched in upper case
                name_part, _slash, rdtype = rest[1].partition('/')
                target = name_part.lower().rstrip('.') + ('/' + rdtype.upper() if rdtype else '')
            return ['dns', rest[0], target]
        raise FaultError('dns takes %s [NAME[/TYPE]], rotate, or delay MS' % '|'.join(DNS_KINDS))
    if name in SIZE_FAULTS:
        if len(rest) != 1 or not rest[0].isdigit() or not 0 < int(rest[0]) < 65536:
            raise FaultError('%s takes N, %s in bytes (1 to 65535)' % (name, SIZE_FAULTS[name]))
        return [name, str(int(rest[0]))]
    if name == 'quic-split':
        if rest:
            raise FaultError('quic-split takes no arguments')
        return [name]
    if name == 'addresses':
        if len(rest) < 2 or rest[0] not in MODES:
            raise FaultError('addresses takes drop|reject and at least one address')
        try:
            addresses = sorted({ipaddress.ip_address(a) for a in rest[1:]}, key=lambda a: (a.version, a))
        except ValueError as error:
            raise FaultError(str(error)) from None
        if not all(any(a in n for n in config.ASSIGNABLE) for a in addresses):
            raise FaultError('addresses: only lab addresses (%s)' % ', '.join(map(str, config.ASSIGNABLE)))
        return ['addresses', rest[0]] + [str(a) for a in addresses]
    raise FaultError('unknown fault %r\n%s' % (name, USAGE))


def _addresses(hostnames):
    v4, v6 = [], []
    for hostname in hostnames:
        addresses = config.name_addresses(hostname)
        v4 += addresses['ipv4']
        v6 += addresses['ipv6']
    return v4, v6


def _for_addresses(hostnames, match, verdicts):
    rules = []
    v4, v6 = _addresses(hostnames)
    for family, addresses in (('ip', v4), ('ip6', v6)):
        if addresses:
            for proto, verdict in verdicts:
                rules.append('%s daddr { %s } %s %s counter %s' % (family, ', '.join(addresses), proto, match, verdict))
    return rules


def nft_rules(faults):
    """The edge's input rules for the active faults (DNS faults have none: the DNS server does them)."""
    rules = []
    tcp_reject = 'reject with tcp reset'
    udp_reject = 'reject with icmpx type port-unreachable'
    for fault in faults:
        name = fault[0]
        if name in ('udp7844', 'tcp7844'):
            protocol = name[:3]
            verdict = 'drop' if fault[1] == 'drop' else (udp_reject if protocol == 'udp' else tcp_reject)
            # [name, mode] for every host; [name, mode, HOST, ipv4, ipv6] for one host's packets only.
            sources = [''] if len(fault) == 2 else ['ip saddr %s ' % fault[3], 'ip6 saddr %s ' % fault[4]]
            for source in sources:
                rules.append('%s%s dport %d counter %s' % (source, protocol, config.TUNNEL_PORT, verdict))
        elif name == 'region':
            # A region that is down answers nothing at all, on any port: a dead data centre, or (reject)
            # one that says no at once. "Host unreachable" would not do for reject: UDP sockets ignore it
            # and TCP may wait for a SYN retransmit, so TCP gets a reset and UDP "administratively prohibited".
            if fault[2] == 'drop':
                rules += _for_addresses([fault[1]], '', [('meta l4proto { tcp, udp }', 'drop')])
            else:
                rules += _for_addresses([fault[1]], '', [('meta l4proto tcp', tcp_reject),
                                                         ('meta l4proto udp', 'reject with icmpx type admin-prohibited')])
        elif name == 'addresses':
            for family, version in (('ip', 4), ('ip6', 6)):
                chosen = [a for a in fault[2:] if ipaddress.ip_address(a).version == version]
                if chosen:
                    verdict = 'drop' if fault[1] == 'drop' else 'reject with icmpx type admin-prohibited'
                    rules.append('%s daddr { %s } meta l4proto { tcp, udp } counter %s' % (family, ', '.join(chosen), verdict))
        elif name == 'quic-size':
            # udp length counts the 8-byte UDP header too.
            rules.append('udp dport %d udp length > %d counter drop' % (config.TUNNEL_PORT, int(fault[1]) + 8))
        elif name == 'quic-exact':
            rules.append('udp dport %d udp length != %d counter drop' % (config.TUNNEL_PORT, int(fault[1]) + 8))
        elif name == 'tls-size':
            # meta length: the whole IP packet. SYN and ACK pass; the segments that carry a large ClientHello do not,
            # nor do their retransmissions (no ICMP "too big" comes back: a black hole).
            rules.append('tcp dport %d meta length > %d counter drop' % (config.TUNNEL_PORT, int(fault[1])))
        elif name == 'quic-split':
            # A QUIC v1 Initial starts with the bits 1100 (long header, fixed bit, type 0). The first Initial of a
            # flow (source address and port) passes and puts the flow in a set; later Initials of it are dropped.
            initial = 'udp dport %d @th,64,4 0xc' % config.TUNNEL_PORT
            for family, field in (('4', 'ip saddr'), ('6', 'ip6 saddr')):
                rules.append('%s %s . udp sport @%s%s counter drop' % (initial, field, QUIC_SEEN_SET, family))
                rules.append('meta nfproto ipv%s %s add @%s%s { %s . udp sport }' % (family, initial, QUIC_SEEN_SET, family, field))
        elif name in config.SERVICE_NAMES:
            verdict = 'drop' if fault[1] == 'drop' else tcp_reject
            rules += _for_addresses(config.SERVICE_NAMES[name], 'dport %d' % config.API_PORT, [('tcp', verdict)])
    return rules


def nft_script(faults):
    """One atomic transaction: (re)create the fault table with exactly the active faults."""
    table = 'inet %s' % config.NFT_FAULT_TABLE
    lines = ['table %s' % table, 'delete table %s' % table, 'table %s {' % table]
    for family, address in (('4', 'ipv4_addr'), ('6', 'ipv6_addr')):
        lines.append('  set %s%s { type %s . inet_service; flags dynamic,timeout; timeout 60s; }'
                     % (QUIC_SEEN_SET, family, address))
    lines += ['  chain input {', '    type filter hook input priority -10; policy accept;']
    lines += ['    %s' % rule for rule in nft_rules(faults)]
    lines += ['  }', '}']
    return '\n'.join(lines) + '\n'


def dns_state(faults):
    """``(rotated, {name: fault}, delay_ms)`` for the DNS server, from the active faults."""
    rotated, answers, delay = False, {}, 0
    for fault in faults:
        if fault[0] != 'dns':
            continue
        if fault[1] == 'rotate':
            rotated = True
        elif fault[1] == 'delay':
            delay = int(fault[2])
        else:
            answers[fault[2]] = fault[1]
    return rotated, answers, delay
