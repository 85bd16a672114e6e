# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The egress plan's contract: its version, purposes, address families, protocols and ports.

The lookup writes plans with these values, the probe options check them,
the reachability code probes by them and the fleet report lays its columns
out by them: one module, so they cannot drift apart. It lives in
module_utils (standard library only, Python 3.8+) because managed hosts
import it too. See docs/egress-plan.md for the whole shape.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# A plan of another version is refused by every reader.
PLAN_VERSION = 1
# What a plan's endpoints are for, in the order plans and reports list them. The lookup resolves the first
# three (LOOKUP_PURPOSES); 'extra' is for the user's own host names.
PURPOSES = ('tunnel', 'api', 'update', 'extra')
LOOKUP_PURPOSES = PURPOSES[:3]
# What a probe or a verification can be told to require (edge_probe's and the firewall modules' `require`); the role's
# verification also knows `origins` (cloudflared's origin services stay reachable), checked by the firewall modules.
REQUIREMENTS = ('any_tunnel', 'quic', 'http2', 'api', 'update', 'dns')
VERIFY_REQUIREMENTS = REQUIREMENTS + ('origins',)
FAMILIES = ('ipv4', 'ipv6')
PROTOCOLS = ('tcp', 'udp')
# The tunnel's port (cloudflared takes it from the SRV answer; 7844 is what every SRV record gives) and HTTPS.
TUNNEL_PORT = 7844
HTTPS_PORT = 443
# The one server name (SNI) per protocol the probe sends to a tunnel address, as cloudflared's tunnel does
# (connection/: h2.cftunnel.com for http2, quic.cftunnel.com for quic).
TUNNEL_SERVER_NAMES = {'tcp': 'h2.cftunnel.com', 'udp': 'quic.cftunnel.com'}
# Every server name cloudflared 2026 may send to a tunnel address: the tunnel's own and probe.cftunnel.com,
# which the start-up pre-checks (2026.5+, prechecks/) send over both protocols. A plan lists them per endpoint
# under tls_server_names, for firewalls that filter by SNI.
TUNNEL_TLS_SERVER_NAMES = {'tcp': ('h2.cftunnel.com', 'probe.cftunnel.com'),
                           'udp': ('quic.cftunnel.com', 'probe.cftunnel.com')}
# The keys every endpoint of a plan has.
ENDPOINT_KEYS = ('hostname', 'purpose', 'port', 'protocols')
