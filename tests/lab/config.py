# -*- coding: utf-8 -*-
"""Names and addresses of the lab: one place, so nothing else invents an address.

The machine's uplink uses 192.0.2.0/24 and fd00::/64; the lab uses only the
documentation ranges 198.51.100.0/24 (fake edge), 203.0.113.0/24
(management) and 2001:db8::/32, and refuses to assign anything else even if
an option asks for it (``ASSIGNABLE``).
"""

from __future__ import annotations

import ipaddress
import os
import re

from tests.support import edge_zone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_LAB_DIR = os.path.join(REPO, '.build', 'lab')

# Every namespace and every root-namespace link of the lab starts with this,
# which is how `down` finds what a crashed `up` left behind.
PREFIX = 'twlab-'
EDGE_NS = PREFIX + 'edge'
CTL_LINK = PREFIX + 'ctl'      # root side of the controller link
EDGE_CTL = 'ctl0'              # edge side of the controller link
BRIDGE = 'br0'                 # the hosts' LAN, in the edge namespace
# Holds every address the fake edge serves: the edge's own loopback (this kernel has no dummy links).
EDGE_ADDRESS_LINK = 'lo'
NFT_EDGE_TABLE = 'twlab_edge'  # the edge's own policy (forwarding, counters)
NFT_FAULT_TABLE = 'twlab_faults'

# Whatever an option says, the lab assigns addresses only inside these.
ASSIGNABLE = tuple(ipaddress.ip_network(n) for n in ('198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32'))

DEFAULT_HOSTS = 'firewalld:2,ufw:2,nftables:1'
# Host kind -> host name prefix. `nftables`: nft only, neither firewalld nor ufw in the host's view;
# `none`: the machine's packages as they are (firewalld not running, ufw inactive), no firewall loaded.
BACKENDS = {'firewalld': 'fw', 'ufw': 'ufw', 'nftables': 'nft', 'none': 'none'}
# Programs a host kind must not have: covered in the host by an empty, non-executable file.
HIDDEN_PROGRAMS = {'nftables': ('ufw', 'firewalld', 'firewall-cmd')}
DEFAULT_MGMT_RANGE = '203.0.113.0/24'
# IPv6 management: controller link and host LAN.
MGMT_V6_RANGE = '2001:db8:ffff::/48'
CTL_V6 = ('2001:db8:ffff::1', '2001:db8:ffff::2', 64)
LAN_V6_PREFIX = '2001:db8:ffff:1::'
EDGE_V6_RANGE = '2001:db8:e::/64'

# The lab resolver, as the hosts see it. Not .53: 198.51.100.53 is one of
# fed-region1's addresses in edge_zone, and "region down" must not take DNS with it.
DNS_HOST_ADDRESSES = ('198.51.100.253', '2001:db8:e::253')
# DNS rotation moves every name to the address "+100" (198.51.100.11 -> .111).
ROTATE_OFFSET = 100

TUNNEL_PORT = 7844
API_PORT = 443
DOT_PORT = 853
TRUSTED_RANGES = list(edge_zone.LAB_RANGES)
SERVER_NAMES = {
    'tcp': 'h2.cftunnel.com',
    'udp': 'quic.cftunnel.com',
    'api': 'api.cloudflare.com',
    'api_fed': 'api.fed.cloudflare.com',
    'update': 'update.argotunnel.com',
    'update_legacy': 'update.cloudflare.com',
    'dot': 'cloudflare-dns.com',
}
# Names whose addresses a fault switches off ("api down", "update down").
SERVICE_NAMES = {
    'api': ('api.cloudflare.com', 'api.fed.cloudflare.com'),
    'update': ('update.argotunnel.com', 'update.cloudflare.com'),
}

HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


class ConfigError(ValueError):
    """A lab option that cannot work; the message says why."""


def parse_hosts(spec):
    """``'firewalld:2,ufw:1'`` -> ``[('fw1', 'firewalld'), ('fw2', 'firewalld'), ('ufw1', 'ufw')]``."""
    hosts = []
    for part in (p.strip() for p in (spec or '').split(',')):
        if not part:
            continue
        match = re.fullmatch(r'([a-z]+)(?::(\d+))?', part)
        if not match or match.group(1) not in BACKENDS:
            raise ConfigError('bad host spec %r: use BACKEND[:COUNT] with BACKEND one of %s' % (part, ', '.join(BACKENDS)))
        backend, count = match.group(1), int(match.group(2) or 1)
        short = BACKENDS[backend]
        start = sum(1 for _name, b in hosts if b == backend)
        hosts.extend(('%s%d' % (short, start + n + 1), backend) for n in range(count))
    if not hosts:
        raise ConfigError('no hosts requested')
    if len(hosts) > 100:
        raise ConfigError('at most 100 hosts')
    return hosts


def _rotate(address):
    """The zone's addresses end in a decimal-looking group; rotation adds ROTATE_OFFSET to it."""
    head, sep, tail = address.rpartition('.' if '.' in address else ':')
    return '%s%s%d' % (head, sep, int(tail) + ROTATE_OFFSET)


def rotated_records(records):
    """The zone with every A/AAAA moved to its rotation address (SRV, TXT unchanged)."""
    moved = {}
    for name, node in records.items():
        moved[name] = dict(node)
        for rdtype in ('A', 'AAAA'):
            if rdtype in node:
                moved[name][rdtype] = [_rotate(a) for a in node[rdtype]]
    return moved


def name_addresses(hostname):
    """Every address (normal and rotated, both families) the edge serves for a name."""
    records = edge_zone.edge_records('lab')
    if hostname not in records:
        raise ConfigError('unknown name %r' % hostname)
    node, moved = records[hostname], rotated_records(records)[hostname]
    return {'ipv4': sorted(set(node.get('A', []) + moved.get('A', []))),
            'ipv6': sorted(set(node.get('AAAA', []) + moved.get('AAAA', [])))}


def region_hostname(region):
    """``region1`` / ``us-region2`` / ``fed-region1`` / a full name -> the zone's hostname."""
    records = edge_zone.edge_records('lab')
    for candidate in (region, '%s.v2.argotunnel.com' % region):
        if candidate in records and 'A' in records[candidate]:
            return candidate
    raise ConfigError('unknown region %r (try region1, region2, us-region1, fed-region2 or a full name)' % region)


# Extra edge addresses for benchmarks (`up --bench-addresses N`): IPv6, so that
# hundreds fit, inside the edge's /64 and outside every name of the zone.
BENCH_ADDRESS_FORMAT = '2001:db8:e::b:%x'
MAX_BENCH_ADDRESSES = 1000


def bench_addresses(count):
    """The first ``count`` benchmark addresses of the edge."""
    if not 0 <= count <= MAX_BENCH_ADDRESSES:
        raise ConfigError('bench addresses: %d is not between 0 and %d' % (count, MAX_BENCH_ADDRESSES))
    return [BENCH_ADDRESS_FORMAT % (index + 1) for index in range(count)]


def edge_addresses():
    """Every address the edge holds on its loopback: the zone, its rotation, the decoy, the resolver."""
    records = edge_zone.edge_records('lab')
    v4, v6 = set(), set()
    for zone in (records, rotated_records(records)):
        for node in zone.values():
            v4.update(node.get('A', []))
            v6.update(node.get('AAAA', []))
    v4.update([edge_zone.DECOY['ipv4'], DNS_HOST_ADDRESSES[0]])
    v6.update([edge_zone.DECOY['ipv6'], DNS_HOST_ADDRESSES[1]])
    # Numeric order: easier to read in `ip addr` and in test failures.
    return sorted(v4, key=ipaddress.ip_address), sorted(v6, key=ipaddress.ip_address)


class Layout:
    """Every address derived from the management range and the host list."""

    def __init__(self, hosts, mgmt_range=DEFAULT_MGMT_RANGE, bench=0):
        try:
            network = ipaddress.ip_network(mgmt_range)
        except ValueError as error:
            raise ConfigError('bad management range %r: %s' % (mgmt_range, error)) from None
        if network.version != 4 or network.prefixlen != 24:
            raise ConfigError('the management range must be an IPv4 /24, not %s' % mgmt_range)
        self.mgmt_range = str(network)
        self.hosts = list(hosts)
        base = network.network_address
        self.ctl_v4 = (str(base + 1), str(base + 2), 30)     # root, edge
        self.ctl_v4_net = '%s/30' % base
        self.lan_v4_net = '%s/25' % (base + 128)
        self.lan_v4_gw = str(base + 129)
        self.ctl_v6 = CTL_V6
        self.ctl_v6_net = '2001:db8:ffff::/64'
        self.lan_v6_net = LAN_V6_PREFIX + '/64'
        self.lan_v6_gw = LAN_V6_PREFIX + '1'
        self.host_addresses = {}
        for index, (name, _backend) in enumerate(self.hosts):
            if index > 120:
                raise ConfigError('too many hosts for a /25')
            self.host_addresses[name] = (str(base + 130 + index), '%s%d' % (LAN_V6_PREFIX, 130 + index))
        self.edge_v4, self.edge_v6 = edge_addresses()
        self.edge_v6 += bench_addresses(bench)

    @property
    def nameservers(self):
        """The resolver the controller uses: the edge end of the controller link (both families)."""
        return [self.ctl_v4[1], self.ctl_v6[1]]

    def networks(self):
        """Every network the lab puts on an interface or a route, for the collision check."""
        nets = [self.ctl_v4_net, self.lan_v4_net, self.ctl_v6_net, self.lan_v6_net, '198.51.100.0/24', EDGE_V6_RANGE]
        return [ipaddress.ip_network(n) for n in nets]

    def check_assignable(self):
        """Refuse anything outside the documentation ranges the lab may use, whatever the options say."""
        for network in self.networks():
            if not any(network.version == a.version and network.subnet_of(a) for a in ASSIGNABLE):
                raise ConfigError('refusing %s: the lab assigns only inside %s' % (network, ', '.join(map(str, ASSIGNABLE))))
