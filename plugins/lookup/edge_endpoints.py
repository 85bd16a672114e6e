# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: edge_endpoints
author: tunnelwall developers (@tunnelwall)
short_description: Resolve the Cloudflare Tunnel edge into one egress plan
version_added: 0.1.0
description:
  - Resolves the names C(cloudflared) connects to, the way C(cloudflared) finds them, and returns the
    I(egress plan), the one data structure every other part of the collection consumes.
  - Discovery starts with the SRV record (V(_v2-origintunneld._tcp.argotunnel.com) for the global edge) and takes
    the port from its answer; it needs at least two SRV targets, as C(cloudflared) does. It then resolves A and AAAA
    of every SRV target and of the well-known region names, so that an allow-list survives a change of SRV targets,
    and of the API host (V(api.cloudflare.com); with O(region=fed) also V(api.fed.cloudflare.com), which
    C(cloudflared)'s commands use with a FedRAMP cert.pem - its start-up pre-check dials V(api.cloudflare.com)
    whatever the endpoint) and the update host when asked for.
  - Each tunnel endpoint lists under C(tls_server_names) every TLS server name (SNI) C(cloudflared) may send to it -
    V(h2.cftunnel.com) (http2), V(quic.cftunnel.com) (quic) and V(probe.cftunnel.com) (the start-up pre-checks of
    C(cloudflared) 2026.5 and later, over both protocols), for firewalls that filter by SNI.
  - All queries are sent at once; a lookup costs one DNS round trip (two if the SRV record names a host that was not
    known in advance).
  - Every address of a Cloudflare name must lie inside Cloudflare's published ranges, shipped with the collection
    with the date they were taken. See O(verify_ownership) and O(trusted_ranges).
  - Any DNS failure fails the lookup, naming the name, the record type, the resolver and the cause, unless
    O(on_dns_failure=catalog). The lookup never returns an empty plan.
  - Plans are cached in a file per set of options for the smallest TTL of their answers (at most a day), shared by every
    forked worker, so a fleet run resolves once. See O(cache).
  - Runs on the controller and needs C(dnspython) and C(netaddr) there. Managed hosts need nothing.
  - Takes no terms; C(query) returns a list holding the one plan.
  - The main options can also be set for a whole play or group through the C(tunnelwall_edge_*) variables listed
    with each option; an option given to the lookup itself wins.
options:
  region:
    description:
      - The edge region, as in C(cloudflared --region).
      - V(global) uses V(_v2-origintunneld._tcp.argotunnel.com), V(us) uses V(_us-v2-origintunneld._tcp.argotunnel.com),
        V(fed) (FedRAMP) uses V(_fed-v2-origintunneld._tcp.argotunnel.com).
    type: str
    choices: [global, us, fed]
    default: global
    vars:
      - name: tunnelwall_edge_region
  generation:
    description:
      - Which generation of names to resolve.
      - V(v2) is what C(cloudflared) uses today. V(legacy) is exactly the original "Ports and IPs" page
        (V(_origintunneld._tcp.argotunnel.com), V(region1.argotunnel.com), V(region2.argotunnel.com),
        V(api.cloudflare.com), V(update.cloudflare.com)), for old C(cloudflared) releases, plus
        V(update.argotunnel.com), the update host those releases (2020.10 to 2022.6) actually checked.
        V(both) resolves both.
      - V(legacy) and V(both) exist for O(region=global) only.
    type: str
    choices: [v2, legacy, both]
    default: v2
    vars:
      - name: tunnelwall_edge_generation
  purposes:
    description:
      - What the plan allows. V(tunnel) is always included; V(api) adds V(api.cloudflare.com) on TCP 443
        (and V(api.fed.cloudflare.com) with O(region=fed)), V(update) the update host on TCP 443 (both update hosts
        with O(generation=legacy)).
      - Neither is needed for the tunnel to run - a token run calls no API, and the daily update check (which
        C(cloudflared) makes even with C(--no-autoupdate), only skipping the update) just fails - but without V(api)
        the start-up pre-check reports the API unreachable, and C(tunnel create), C(route) or C(run NAME) with
        cert.pem need it.
      - V(extra) is accepted too, as the role's C(egress_firewall_purposes) takes it, and changes nothing - the
        O(extra_hostnames) are always in the plan.
    type: list
    elements: str
    default: [tunnel, api, update]
    vars:
      - name: tunnelwall_edge_purposes
  extra_hostnames:
    description:
      - Further host names the plan allows, with purpose V(extra), such as V(github.com) or the Access team domain
        C(cloudflared) fetches its JWT keys from - V(<team>.cloudflareaccess.com), or V(<team>.fed.cloudflareaccess.com)
        with a FedRAMP account.
      - Each item is a host name (TCP 443), or a dict with C(hostname), C(port) (default 443), C(protocols)
        (default V([tcp])) and C(verify_ownership) (default V(false), as most such names are not Cloudflare's).
    type: list
    elements: raw
    default: []
    vars:
      - name: tunnelwall_edge_extra_hostnames
  ip_version:
    description:
      - Address families to resolve and allow.
      - V(both) is the default because C(cloudflared) 2026.5 and later may use IPv6 on a dual-stack host.
      - V(auto) is the same as V(both) here (the probe's V(auto) then tests the families each host has a route for),
        so that one value works for the lookup and the probe.
    type: str
    choices: ['both', '4', '6', 'auto']
    default: both
    vars:
      - name: tunnelwall_edge_ip_version
  nameservers:
    description:
      - IPv4 or IPv6 address literals of the DNS servers to ask. Empty means the controller's C(/etc/resolv.conf).
    type: list
    elements: str
    default: []
    vars:
      - name: tunnelwall_edge_nameservers
  port:
    description: UDP/TCP port of O(nameservers).
    type: int
    default: 53
    vars:
      - name: tunnelwall_edge_dns_port
  timeout:
    description: Seconds to wait for one answer from one nameserver.
    type: float
    default: 2.0
  lifetime:
    description: Seconds one query may take in all, retries and nameservers included. At least O(timeout).
    type: float
    default: 5.0
  tcp:
    description: Send the queries over TCP instead of UDP.
    type: bool
    default: false
  dot_fallback:
    description:
      - When the SRV query fails, retry it over DNS-over-TLS, as C(cloudflared) does. The A and AAAA queries always
        use the normal resolver, as in C(cloudflared).
    type: bool
    default: false
    vars:
      - name: tunnelwall_edge_dot_fallback
  dot_server:
    description: Address of the DNS-over-TLS server for O(dot_fallback).
    type: str
    default: 1.1.1.1
  dot_server_name:
    description: Name the DNS-over-TLS server's certificate must carry.
    type: str
    default: cloudflare-dns.com
  dot_port:
    description: Port of the DNS-over-TLS server.
    type: int
    default: 853
  dot_ca_path:
    description: CA bundle to verify the DNS-over-TLS server with. Default is the controller's trust store.
    type: path
  prefix_v4:
    description:
      - Widen every IPv4 address of the rules to its covering block of this many bits, then merge.
      - V(32) (the default) allows exactly the resolved addresses; V(24) survives a change of address within
        a /24, at the price of allowing the whole block. 16 to 32.
    type: int
    default: 32
    vars:
      - name: tunnelwall_edge_prefix_v4
  prefix_v6:
    description: Like O(prefix_v4), for IPv6. 32 to 128, default V(128).
    type: int
    default: 128
    vars:
      - name: tunnelwall_edge_prefix_v6
  verify_ownership:
    description:
      - Fail when an address of a Cloudflare name lies outside the trusted ranges (a spoofed or hijacked answer).
      - V(false) turns the guard off, with a warning.
    type: bool
    default: true
  trusted_ranges:
    description:
      - CIDR blocks that replace Cloudflare's published ranges for the ownership guard, for a lab or a proxy that
        answers with its own addresses.
    type: list
    elements: str
    default: []
    vars:
      - name: tunnelwall_edge_trusted_ranges
  on_dns_failure:
    description:
      - V(fail) fails the lookup on any DNS failure.
      - V(catalog) returns the tunnel addresses Cloudflare publishes instead, with C(source=catalog) and a warning.
        They have no published counterpart for api, update and extra host names, which are then left out
        (also with a warning).
    type: str
    choices: [fail, catalog]
    default: fail
    vars:
      - name: tunnelwall_edge_on_dns_failure
  cache:
    description:
      - Cache plans for the smallest TTL of their answers, CNAMEs included, and never longer than one day.
        Catalog plans are never cached.
      - A cached plan passes the ownership guard again before it is used.
    type: bool
    default: true
  cache_dir:
    description:
      - Directory of the cache. Default is C(tunnelwall-edge-endpoints) in Ansible's local temporary root.
      - Created with mode 0700. A directory that is a symbolic link, is owned by another user or is writable by other
        users, and an entry or lock file that is a symbolic link or not the current user's, are ignored with a
        warning and the plan is resolved afresh. Entries are keyed by the options, the user and the machine.
    type: path
notes:
  - The well-known region names are resolved even when the SRV record does not name them, so that the plan covers both.
  - A name with addresses in one family only (github.com has no AAAA) is fine with O(ip_version=both).
seealso:
  - name: Cloudflare Tunnel with firewall
    description: The ports and addresses cloudflared needs.
    link: https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/deploy-tunnels/tunnel-with-firewall/
"""

EXAMPLES = r"""
- name: Resolve the global edge, the API and the update host
  ansible.builtin.set_fact:
    egress_plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
  run_once: true

- name: US region, IPv4 only, through a given resolver
  ansible.builtin.set_fact:
    egress_plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints', region='us', ip_version='4', nameservers=['9.9.9.9']) }}"

- name: Old cloudflared releases too, rules widened to /24 blocks
  ansible.builtin.set_fact:
    egress_plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints', generation='both', prefix_v4=24, prefix_v6=64) }}"

- name: Tunnel only, plus the Access team domain
  ansible.builtin.set_fact:
    egress_plan: >-
      {{ lookup('tunnelwall.cloudflared.edge_endpoints', purposes=['tunnel'],
                extra_hostnames=[{'hostname': 'myteam.cloudflareaccess.com', 'verify_ownership': true}]) }}

- name: FedRAMP - the fed edge, api.fed.cloudflare.com, and the FedRAMP Access team domain
  ansible.builtin.set_fact:
    egress_plan: >-
      {{ lookup('tunnelwall.cloudflared.edge_endpoints', region='fed',
                extra_hostnames=[{'hostname': 'myteam.fed.cloudflareaccess.com', 'verify_ownership': true}]) }}

- name: Every SNI an SNI-filtering firewall must pass for the tunnel
  ansible.builtin.debug:
    msg: "{{ egress_plan.endpoints | selectattr('purpose', 'eq', 'tunnel') | map(attribute='tls_server_names') | list }}"

- name: Fall back to the published addresses when DNS is blocked
  ansible.builtin.set_fact:
    egress_plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints', on_dns_failure='catalog', dot_fallback=true) }}"

- name: Show the rules a firewall gets
  ansible.builtin.debug:
    msg: "{{ item.protocol }}/{{ item.port }} {{ item.purpose }}: {{ item.ipv4 + item.ipv6 }}"
  loop: "{{ egress_plan.rules }}"
"""

RETURN = r"""
_raw:
  description: A list holding one egress plan.
  type: list
  elements: dict
  contains:
    version:
      description: Version of the plan's format.
      type: int
      sample: 1
    region:
      description: The region resolved.
      type: str
      sample: global
    generation:
      description: The generation of names resolved.
      type: str
      sample: v2
    source:
      description: V(dns), or V(catalog) when DNS failed and O(on_dns_failure=catalog).
      type: str
      sample: dns
    catalog_taken:
      description: Date the published list was taken; only when RV(_raw[].source=catalog).
      type: str
      sample: "2026-11-27"
    resolved_at:
      description: When the plan was resolved (UTC, ISO 8601). A cached plan keeps its original time.
      type: str
      sample: "2026-11-27T10:00:00Z"
    srv_names:
      description: The SRV records the tunnel endpoints come from; the probe asks them again from each host.
      type: list
      elements: str
      sample: [_v2-origintunneld._tcp.argotunnel.com]
    dns_names:
      description:
        - The other names C(cloudflared) asks the host's resolver, whatever the region, each with its record C(types)
          and C(why) (when it asks, and the C(cloudflared) source file) - for resolvers that filter by name.
          V(region1.v2.argotunnel.com) (A/AAAA every 5 minutes, its virtual DNS service, even with O(region=us) or
          V(fed)), V(cfd-features.argotunnel.com) and V(protocol-v2.argotunnel.com) (TXT).
        - No connection goes to these names' addresses because of this look-up; the probe asks them from each host.
      type: list
      elements: dict
      sample:
        - name: region1.v2.argotunnel.com
          types: [A, AAAA]
          why: "every 5 minutes, whatever the region: the virtual DNS service ... (ingress/origins/dns.go)"
    endpoints:
      description: One entry per host name.
      type: list
      elements: dict
      sample:
        - hostname: region1.v2.argotunnel.com
          purpose: tunnel
          port: 7844
          protocols: [tcp, udp]
          server_names: {tcp: h2.cftunnel.com, udp: quic.cftunnel.com}
          tls_server_names: {tcp: [h2.cftunnel.com, probe.cftunnel.com], udp: [quic.cftunnel.com, probe.cftunnel.com]}
          ipv4: [198.41.192.7, 198.41.192.27]
          ipv6: ["2606:4700:a0::1"]
          ttl: 300
    rules:
      description:
        - What a firewall must allow, one entry per purpose, protocol and port, addresses aggregated into sorted
          CIDR blocks without host bits.
      type: list
      elements: dict
      sample:
        - purpose: tunnel
          protocol: udp
          port: 7844
          ipv4: [198.41.192.7/32, 198.41.192.27/32]
          ipv6: ["2606:4700:a0::1/128"]
"""

import os

from ansible import constants as C
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import (
    edge_lookup, edge_options, edge_resolver, egress_plan, known_variables, plan_cache)

display = Display()


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        """A one-item list, the egress plan for the options given (no terms): resolved now, or from the cache when
        ``cache`` is on and the cached plan is fresh and passes the ownership guard."""
        missing = [name for name, present in (('dnspython', edge_resolver.HAS_DNSPYTHON),
                                              ('netaddr', egress_plan.HAS_NETADDR)) if not present]
        if missing:
            raise AnsibleLookupError('edge_endpoints needs %s on the controller (pip install %s)'
                                     % (' and '.join(missing), ' '.join(missing)))
        if terms:
            raise AnsibleLookupError('edge_endpoints takes no terms, only options (got %r)' % (terms,))
        # set_options ignores an option it does not know: regoin='us' would resolve the global edge.
        typos = known_variables.unknown(kwargs, self.option_definitions, prefixes=('',))
        if typos:
            raise AnsibleLookupError('edge_endpoints: %s; nothing was resolved'
                                     % known_variables.describe(typos, what='option'))
        edge_options.check_raw(kwargs)
        self.set_options(var_options=variables, direct=kwargs)
        options = edge_options.parse_options(self.get_option)
        if not options.verify_ownership:
            display.warning('edge_endpoints: verify_ownership=false: addresses are not checked against '
                            "Cloudflare's published ranges; a spoofed DNS answer goes into the plan unnoticed")

        def resolve():
            """Resolve the plan now: (plan, how long it may be cached), as plan_cache.cached expects."""
            return edge_lookup.resolve_plan(options, display.warning)

        if not self.get_option('cache'):
            return [resolve()[0]]
        directory = self.get_option('cache_dir') or os.path.join(
            os.path.dirname(C.DEFAULT_LOCAL_TMP), 'tunnelwall-edge-endpoints')
        plan, hit = plan_cache.cached(directory, edge_lookup.cache_key(options), resolve, warn=display.warning,
                                      check=lambda cached: edge_lookup.cached_plan_problem(options, cached))
        if hit:
            display.vvv('edge_endpoints: plan resolved at %s taken from the cache in %s' % (plan['resolved_at'], directory))
        return [plan]
