# -*- coding: utf-8 -*-
"""DNS records of a fake Cloudflare edge, for the test DNS server and the lab.

Two address profiles:

* ``lab``: documentation addresses (198.51.100.0/24, 2001:db8::/32) that the
  lab's edge namespace really serves; the lookup needs ``trusted_ranges``.
* ``published``: the addresses Cloudflare publishes, so the default
  ownership guard can be tested without ``trusted_ranges``. Tests only put
  them in DNS answers and never send a packet to them.
"""

from __future__ import annotations

LAB_RANGES = ('198.51.100.0/24', '2001:db8::/32')
# In no answer of the zone: a default-deny host must not reach it.
DECOY = {'ipv4': '198.51.100.99', 'ipv6': '2001:db8:e::99'}
# Outside every trusted range: what a spoofed answer carries.
SPOOFED = {'A': '198.18.0.66', 'AAAA': '100::66'}

SRV_NAMES = {
    'global': '_v2-origintunneld._tcp.argotunnel.com',
    'us': '_us-v2-origintunneld._tcp.argotunnel.com',
    'fed': '_fed-v2-origintunneld._tcp.argotunnel.com',
    'legacy': '_origintunneld._tcp.argotunnel.com',
}
REGION_HOSTS = {
    'global': ('region1.v2.argotunnel.com', 'region2.v2.argotunnel.com'),
    'us': ('us-region1.v2.argotunnel.com', 'us-region2.v2.argotunnel.com'),
    'fed': ('fed-region1.v2.argotunnel.com', 'fed-region2.v2.argotunnel.com'),
    'legacy': ('region1.argotunnel.com', 'region2.argotunnel.com'),
}
ZONES = ('argotunnel.com', 'cftunnel.com', 'cloudflare.com', 'cloudflareaccess.com', 'github.com')

# Last octet (IPv4) / last group (IPv6) of each lab host: three per region.
_LAB_HOSTS = {
    'region1.v2.argotunnel.com': (11, 12, 13),
    'region2.v2.argotunnel.com': (21, 22, 23),
    'us-region1.v2.argotunnel.com': (31, 32, 33),
    'us-region2.v2.argotunnel.com': (41, 42, 43),
    'fed-region1.v2.argotunnel.com': (51, 52, 53),
    'fed-region2.v2.argotunnel.com': (61, 62, 63),
    # The legacy names served the same edge as their .v2 successors.
    'region1.argotunnel.com': (11, 12, 13),
    'region2.argotunnel.com': (21, 22, 23),
    'api.cloudflare.com': (80,),
    'api.fed.cloudflare.com': (83,),
    'update.argotunnel.com': (81,),
    'update.cloudflare.com': (82,),
    'myteam.cloudflareaccess.com': (91,),
    'github.com': (92,),
}


def lab_addresses(hostname):
    octets = _LAB_HOSTS[hostname]
    return {'A': ['198.51.100.%d' % n for n in octets], 'AAAA': ['2001:db8:e::%d' % n for n in octets]}


def published_addresses(hostname):
    """The catalog's addresses for the region names; plausible Cloudflare ones for the rest."""
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils.cloudflare_catalog import PUBLISHED_EDGE
    if hostname in PUBLISHED_EDGE:
        return {'A': list(PUBLISHED_EDGE[hostname]['ipv4']), 'AAAA': list(PUBLISHED_EDGE[hostname]['ipv6'])}
    n = _LAB_HOSTS[hostname][0]
    # 104.16.0.0/13 and 2606:4700::/32 are Cloudflare's; github.com is not and gets a non-Cloudflare address.
    if hostname == 'github.com':
        return {'A': ['140.82.121.4'], 'AAAA': []}
    return {'A': ['104.19.192.%d' % n], 'AAAA': ['2606:4700::6813:c0%02x' % n]}


def edge_records(profile='lab', srv_port=7844, ttl=300):
    """``{name: {rdtype: [values], 'ttl': n}}`` for every name cloudflared and the tests use."""
    addresses = lab_addresses if profile == 'lab' else published_addresses
    records = {}
    for hostname in _LAB_HOSTS:
        records[hostname] = dict(addresses(hostname), ttl=ttl)
    for generation, srv in SRV_NAMES.items():
        records[srv] = {'SRV': [[1, 1, srv_port, target] for target in REGION_HOSTS[generation]], 'ttl': ttl}
    records['argotunnel.com'] = {'TXT': ['tunnelwall fake edge'], 'ttl': ttl}
    # cloudflared's feature record; protocol-v2.argotunnel.com stays absent (NXDOMAIN), as it may be for real.
    records['cfd-features.argotunnel.com'] = {'TXT': ['tunnelwall fake features'], 'ttl': ttl}
    return records
