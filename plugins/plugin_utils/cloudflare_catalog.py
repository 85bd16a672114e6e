# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cloudflare's published address data, shipped with the collection.

Two lists, each with the date it was taken:

* ``CLOUDFLARE_RANGES``: every block Cloudflare publishes as its own
  (https://www.cloudflare.com/ips-v4 and /ips-v6). The ownership guard
  checks every resolved address against it.
* ``PUBLISHED_EDGE``: the tunnel edge addresses of the "Tunnel with
  firewall" page. Used only when DNS fails and the caller asked for
  ``on_dns_failure=catalog``.

Update both together when Cloudflare changes them, and bump the dates.
"""

from __future__ import annotations

CLOUDFLARE_RANGES_TAKEN = '2026-11-27'
CLOUDFLARE_RANGES = {
    'ipv4': (
        '173.245.48.0/20', '103.21.244.0/22', '103.22.200.0/22', '103.31.4.0/22',
        '141.101.64.0/18', '108.162.192.0/18', '190.93.240.0/20', '188.114.96.0/20',
        '197.234.240.0/22', '198.41.128.0/17', '162.158.0.0/15', '104.16.0.0/13',
        '104.24.0.0/14', '172.64.0.0/13', '131.0.72.0/22',
    ),
    'ipv6': (
        '2400:cb00::/32', '2606:4700::/32', '2803:f800::/32', '2405:b500::/32',
        '2405:8100::/32', '2a06:98c0::/29', '2c0f:f248::/32',
    ),
}

# 2026-11-28: the legacy region names lost the IPv6 addresses an earlier copy gave them (see below).
PUBLISHED_EDGE_TAKEN = '2026-11-28'


def _hosts(prefix, last_octets):
    return tuple('%s%d' % (prefix, n) for n in last_octets)


_REGION1_V4 = _hosts('198.41.192.', (7, 27, 37, 47, 57, 67, 77, 107, 167, 227))
_REGION2_V4 = _hosts('198.41.200.', (13, 23, 33, 43, 53, 63, 73, 113, 193, 233))
_ONE_TO_TEN = range(1, 11)

# hostname -> addresses, as published. The legacy region names are listed with
# what the original "Ports and IPs" page published for them - the IPv4 addresses
# their .v2 successors kept - and no IPv6: the pre-2022 edge names were never
# published with IPv6 addresses, so none is guessed for them.
PUBLISHED_EDGE = {
    'region1.v2.argotunnel.com': {'ipv4': _REGION1_V4, 'ipv6': _hosts('2606:4700:a0::', _ONE_TO_TEN)},
    'region2.v2.argotunnel.com': {'ipv4': _REGION2_V4, 'ipv6': _hosts('2606:4700:a8::', _ONE_TO_TEN)},
    'us-region1.v2.argotunnel.com': {'ipv4': _hosts('198.41.218.', _ONE_TO_TEN), 'ipv6': _hosts('2606:4700:a1::', _ONE_TO_TEN)},
    'us-region2.v2.argotunnel.com': {'ipv4': _hosts('198.41.219.', _ONE_TO_TEN), 'ipv6': _hosts('2606:4700:a9::', _ONE_TO_TEN)},
    'fed-region1.v2.argotunnel.com': {'ipv4': _hosts('162.159.234.', _ONE_TO_TEN), 'ipv6': _hosts('2a06:98c1:4d::', _ONE_TO_TEN)},
    'fed-region2.v2.argotunnel.com': {'ipv4': _hosts('172.64.234.', _ONE_TO_TEN), 'ipv6': _hosts('2606:4700:f6::', _ONE_TO_TEN)},
    'region1.argotunnel.com': {'ipv4': _REGION1_V4, 'ipv6': ()},
    'region2.argotunnel.com': {'ipv4': _REGION2_V4, 'ipv6': ()},
}
