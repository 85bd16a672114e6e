# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which DNS names cloudflared needs, by region, generation and purpose.

The names mirror cloudflared's own discovery (``RegionalServiceName`` in
``edgediscovery/allregions``) and Cloudflare's "Ports and IPs" pages, old
and new. Everything here is data and pure functions; nothing touches DNS.
"""

from __future__ import annotations

import dataclasses
import re

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract

REGIONS = ('global', 'us', 'fed')
GENERATIONS = ('v2', 'legacy', 'both')
# The plan's contract (module_utils/egress_contract.py), under the names the lookup has always used.
PURPOSES = egress_contract.LOOKUP_PURPOSES
# Order of purposes in a plan; extra hostnames come last.
PURPOSE_ORDER = egress_contract.PURPOSES

TUNNEL_PORT = egress_contract.TUNNEL_PORT
HTTPS_PORT = egress_contract.HTTPS_PORT
TUNNEL_SERVER_NAMES = egress_contract.TUNNEL_SERVER_NAMES
# Every TLS server name (SNI) cloudflared may send to a tunnel address (probe.cftunnel.com included): the plan
# lists them under ``tls_server_names``.
TUNNEL_TLS_SERVER_NAMES = egress_contract.TUNNEL_TLS_SERVER_NAMES
# cloudflared refuses to start with fewer SRV targets than this.
MIN_SRV_TARGETS = 2
# The API host of the start-up pre-check (prechecks/probes.go: a TCP connect to api.cloudflare.com:443, every region).
PRECHECK_API = 'api.cloudflare.com'
# What cloudflared 2026 asks the host's resolver besides the SRV names and the endpoints' A/AAAA, whatever the
# region: (name, record types, when and why). A resolver that filters by name must answer these too; the plan
# carries them under ``dns_names`` and edge_probe asks them.
DNS_NAMES = (
    ('region1.v2.argotunnel.com', ('A', 'AAAA'),
     'every 5 minutes, whatever the region: the virtual DNS service learns the host\'s resolver address from this '
     'look-up (ingress/origins/dns.go, refreshFreq and defaultLookupHost); no connection goes to its addresses'),
    ('cfd-features.argotunnel.com', ('TXT',), 'at start and hourly: feature flags (features/selector.go)'),
    ('protocol-v2.argotunnel.com', ('TXT',),
     'at every start, whatever --protocol or the token (connection/protocol.go, NewProtocolSelector); hourly with '
     '--protocol auto and no --token, as with --token-file, the service default (edgediscovery/protocol.go)'),
)


def dns_names():
    """The plan's ``dns_names``: ``[{name, types, why}]`` from DNS_NAMES."""
    return [{'name': name, 'types': list(types), 'why': why} for name, types, why in DNS_NAMES]


# ASCII letters, digits, '-' and '_' (SRV owner names such as _tcp); IDNs go in their xn-- form.
_LABEL = re.compile(r'[a-z0-9_-]{1,63}')


def is_hostname(text):
    """Whether ``text`` (lower case, no final dot) is a fully qualified DNS host name of at least two labels."""
    labels = text.split('.') if isinstance(text, str) else []
    return len(labels) >= 2 and len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


@dataclasses.dataclass(frozen=True)
class NameSet:
    """What one generation of cloudflared looks up for one region."""

    generation: str
    srv: str
    region_hostnames: tuple
    apis: tuple
    updates: tuple

    @property
    def api(self):
        """The API host the tunnel's own commands use (the first of ``apis``)."""
        return self.apis[0]

    @property
    def update(self):
        """The update host cloudflared of this generation checks first."""
        return self.updates[0]


def _v2_names(region):
    # cloudflared: "_" + region + "-" + "v2-origintunneld" for a named region.
    service = 'v2-origintunneld' if region == 'global' else '%s-v2-origintunneld' % region
    host_prefix = '' if region == 'global' else '%s-' % region
    return NameSet(
        generation='v2',
        srv='_%s._tcp.argotunnel.com' % service,
        region_hostnames=tuple('%sregion%d.v2.argotunnel.com' % (host_prefix, n) for n in (1, 2)),
        # With a FedRAMP cert.pem cloudflared's commands talk to the FedRAMP API: the endpoint of the certificate
        # decides, not --region (cmd/cloudflared/tunnel/subcommand_context.go, client(); credentials/credentials.go).
        # The start-up pre-check dials api.cloudflare.com:443 whatever the endpoint (prechecks/probes.go,
        # targetAPI), so a FedRAMP plan carries both.
        apis=('api.fed.cloudflare.com', PRECHECK_API) if region == 'fed' else (PRECHECK_API,),
        # The daily update check goes here even with --no-autoupdate, which only skips the update itself
        # (cmd/cloudflared/updater/update.go: NewAutoUpdater, Run, applyUpdate; UpdateURL).
        updates=('update.argotunnel.com',),
    )


# The names of the original "Ports and IPs" page, before the move to .v2 in 2022. Its update host is
# update.cloudflare.com, but the cloudflared releases that used these region names (2020.10 to 2022.6)
# checked update.argotunnel.com (updater/: the update service URL of those releases): both are carried.
LEGACY_NAMES = NameSet(
    generation='legacy',
    srv='_origintunneld._tcp.argotunnel.com',
    region_hostnames=('region1.argotunnel.com', 'region2.argotunnel.com'),
    apis=('api.cloudflare.com',),
    updates=('update.cloudflare.com', 'update.argotunnel.com'),
)


def name_sets(region, generation):
    """The name sets to resolve for validated options, newest generation first.

    The legacy page only ever described the global edge: option validation
    refuses a regional legacy set before it gets here.
    """
    sets = []
    if generation in ('v2', 'both'):
        sets.append(_v2_names(region))
    if generation in ('legacy', 'both'):
        sets.append(LEGACY_NAMES)
    return tuple(sets)
