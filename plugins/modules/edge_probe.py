#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: edge_probe
short_description: Prove from a host what of the Cloudflare Tunnel edge it can reach
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - Answers the question users have before installing C(cloudflared) - will it connect from this host, over which
    protocol, and if not, what is blocked? - on every host of a fleet at once.
  - Probes every address of the egress plan concurrently - TCP connect, a TLS handshake with the tunnel's server name on
    TCP 7844, a real QUIC handshake on UDP 7844, and TLS on TCP 443 to the API and update hosts - and asks the host's
    own nameservers the plan's DNS questions (its SRV names, every host name, and its C(dns_names) - among them
    V(region1.v2.argotunnel.com), which C(cloudflared) resolves every 5 minutes whatever the region) and the TXT
    questions C(cloudflared) asks (V(cfd-features.argotunnel.com), V(protocol-v2.argotunnel.com)).
  - The TLS check on TCP 7844 trusts what C(cloudflared) trusts there - the system store plus the three Cloudflare
    roots it embeds, or O(ca_path) alone, like C(--cacert) - and then sends C(cloudflared)'s own ClientHello on a
    second connection - TLS 1.3 with its groups X25519MLKEM768, P256Kyber768Draft00 and P-256 and one 1216-byte
    X25519MLKEM768 key share, about 1.4 KB, more than one full TCP segment on many paths. A ServerHello or
    HelloRetryRequest must come back; when only the short handshake was answered, the check fails as V(tls_size),
    naming the size (an MTU black hole or a middlebox that drops large hellos), which fails C(cloudflared)'s HTTP/2.
  - The QUIC check sends what C(cloudflared) 2026 sends first - QUIC version 1 Initials of its size (1232 bytes of UDP
    payload to an IPv4 address, 1252 to an IPv6 one) carrying, over two Initials, a TLS 1.3 ClientHello with its
    post-quantum key share (X25519MLKEM768, plus X25519), ALPN V(argotunnel), protected as RFC 9001 says. When that
    gets no answer, a single Initial of the same size and one of 1200 bytes tell why - V(quic_size) (packet size /
    path MTU - only smaller datagrams get through) or V(quic_multi_initial) (only the first Initial of a connection
    gets through) - so a path that would fail C(cloudflared) never passes the probe.
  - Beside it goes the flight of C(cloudflared)'s start-up pre-check (C(prechecks/probes.go) - an empty quic-go
    configuration, so 1280-byte Initials in both families, SNI V(probe.cftunnel.com)); each row's RV(results[].flights)
    says which sizes were answered, and the message says when the pre-check's size alone is lost (the pre-check
    then reports QUIC as failed though the tunnel's QUIC works) or alone passes.
  - A silent drop (timeout), an active rejection (V(refused), V(unreachable)), the host's own firewall
    (V(blocked_locally)) and something that answers but is not the edge (V(tls), V(tls_certificate),
    V(quic_closed)) are told apart, each with its latency; so are the size losses V(tls_size) and V(quic_size).
  - Recommends the C(cloudflared) settings for the host from what it proved - C(--protocol) and C(--edge-ip-version),
    each with a reason - and returns what to open as data (RV(to_open)).
  - Needs only the Python standard library on the host (AES-GCM for QUIC is done in Python when the C(cryptography)
    package is missing). Read-only; runs fully in check mode and never reports a change.
extends_documentation_fragment:
  - tunnelwall.cloudflared.edge_probe
  - tunnelwall.cloudflared.attributes_read_only
attributes:
  platform:
    description: Target operating system.
    support: full
    platforms: posix
options:
  resolv_conf:
    description: Resolver configuration whose nameservers the V(dns) check asks.
    type: path
    default: /etc/resolv.conf
  origins:
    description:
      - cloudflared's origins to probe too - one TCP connect per address (names resolved on the host); the result's
        RV(origins) says per address V(reachable), V(refused) or V(blocked) (no answer, an ICMP error, the local
        firewall) or V(not checked) (a network). One connect cannot tell an origin's own refusal from a firewall's
        TCP reset (a Linux default deny rejects with one) - the firewall modules' verification can, with a connect
        before its change. Reported only; a blocked origin does not fail the probe.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: A name, an IPv4 or IPv6 address.
        type: str
        required: true
      port:
        description: The origin's port.
        type: int
        required: true
      protocol:
        description:
          - V(udp) origins are listed in RV(origins) as not checked (no connect can prove UDP), so the role's
            C(egress_firewall_origins) can be passed as it is.
        type: str
        choices: [tcp, udp]
        default: tcp
  cloudflared_config:
    description:
      - Probe the origins of cloudflared's config too - V(auto) finds it as cloudflared does, a path reads that file,
        V(none) (the default here) reads nothing. The same reading as the C(cloudflared_config) option of
        M(tunnelwall.cloudflared.nftables_egress); a file or rule that cannot be understood fails the probe, naming
        both.
    type: str
    default: none
notes:
  - C(nc -u) cannot prove UDP reachability - a dropped datagram looks like success. Only a QUIC answer does.
  - The QUIC check completes the server's first flight (ServerHello) and stops; no connection is established.
seealso:
  - module: tunnelwall.cloudflared.win_edge_probe
  - plugin: tunnelwall.cloudflared.edge_endpoints
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Resolve the egress plan once
  ansible.builtin.set_fact:
    egress_plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
  run_once: true

- name: Prove what each host reaches; fail when no tunnel protocol works
  tunnelwall.cloudflared.edge_probe:
    plan: "{{ egress_plan }}"
  register: probe

- name: Say which protocol cloudflared should use
  ansible.builtin.debug:
    msg: "{{ probe.recommended_protocol }}: {{ probe.recommendation_reason }}"

- name: Insist on QUIC and the API, IPv6 only, 2 seconds
  tunnelwall.cloudflared.edge_probe:
    plan: "{{ egress_plan }}"
    ip_version: '6'
    timeout: 2
    require: [quic, api]

- name: Probe two addresses without a plan
  tunnelwall.cloudflared.edge_probe:
    targets:
      - {address: 198.41.192.7, port: 7844, check: quic, server_name: quic.cftunnel.com}
      - {address: 198.41.192.7, port: 7844, check: tls, server_name: h2.cftunnel.com}
    require: []
"""

RETURN = r"""
results:
  description: One entry per target and check.
  returned: always
  type: list
  elements: dict
  sample:
    - hostname: region1.v2.argotunnel.com
      purpose: tunnel
      address: 198.41.192.7
      family: ipv4
      port: 7844
      protocol: udp
      check: quic
      server_name: quic.cftunnel.com
      ok: false
      error_kind: timeout
      message: "UDP 7844: no QUIC answer within 3s (dropped?)"
      latency_ms: 3001
      initial_size: 1232
      initials: 2
      flights:
        - {flight: cloudflared, size: 1232, initials: 2, answered: false}
        - {flight: precheck, size: 1280, initials: 2, answered: false}
        - {flight: single, size: 1232, initials: 1, answered: false}
        - {flight: small, size: 1200, initials: 1, answered: false}
  contains:
    error_kind:
      description:
        - Why a check failed (V(null) when it passed) - V(timeout), V(refused), V(unreachable), V(blocked_locally),
          V(reset), V(tls), V(tls_certificate), V(tls_size), V(quic_closed), V(quic_version), V(quic_size),
          V(quic_multi_initial), V(error).
      type: str
    hello_size:
      description:
        - V(tls) rows whose handshake passed - the size in bytes of C(cloudflared)'s ClientHello (one TLS record)
          sent on the second connection.
      type: int
      returned: when C(cloudflared)'s hello was sent
    initial_size:
      description: V(quic) rows - the UDP payload of C(cloudflared)'s Initials to this address (1232 IPv4, 1252 IPv6).
      type: int
      returned: for V(quic) rows
    flights:
      description:
        - V(quic) rows - every QUIC flight sent, with its C(flight) (V(cloudflared) - the tunnel's; V(precheck) - the
          start-up pre-check's 1280-byte one; V(single) and V(small) - sent only to explain a silence), datagram
          C(size), number of C(initials) and whether it was C(answered).
      type: list
      elements: dict
      returned: for V(quic) rows
summary:
  description: Counts of ok and failed results per purpose, check, protocol and family.
  returned: always
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, check: quic, protocol: udp, family: ipv4, ok: 20, failed: 0, total: 20}
recommended_protocol:
  description: V(quic), V(http2) or V(none), in cloudflared's own order of preference.
  returned: always
  type: str
  sample: quic
recommendation_reason:
  description: Why, naming the host names that answered and those that did not.
  returned: always
  type: str
  sample: "QUIC handshakes answered by region1.v2.argotunnel.com (10/10 addresses), region2.v2.argotunnel.com (10/10 addresses)"
families:
  description: The address families probed.
  returned: always
  type: list
  elements: str
  sample: [ipv4, ipv6]
dns:
  description: What the host's own resolver says.
  returned: always
  type: dict
  contains:
    nameservers:
      description: The nameservers asked.
      type: list
      elements: str
    answers:
      description: One entry per question, with C(ok), C(rcode), C(answers), C(error_kind), C(message), C(latency_ms).
      type: list
      elements: dict
    findings:
      description:
        - C(no_resolver), C(unresolvable), C(not_in_plan) (the host sees addresses the plan lacks), C(not_seen)
          (the plan has addresses the host does not see), C(srv_target_not_in_plan) and C(txt_blocked) (a TXT
          question of C(cloudflared) got no answer - timeout, REFUSED, SERVFAIL; an absent record, NXDOMAIN or no TXT,
          is fine and only marked C(state=absent) in its answer).
      type: list
      elements: dict
elapsed_ms:
  description: How long the probes took on the host, in milliseconds (about O(timeout) when something is dropped).
  returned: always
  type: int
  sample: 2013
unmet_requirements:
  description: One message per requirement of O(require) that failed, naming what failed and what to open.
  returned: always
  type: list
  elements: str
unmet_detail:
  description:
    - The same requirements as data, one per message of RV(unmet_requirements) - C(requirement), C(failed) (what
      failed, one line) and C(to_open) (the destinations to open, a list; empty when opening would not help).
  returned: always
  type: list
  elements: dict
  sample: [{requirement: quic, failed: "quic udp/7844 timeout: 198.51.100.11", to_open: ["open outbound UDP 7844 to 198.51.100.11/32 (tunnel)"]}]
recommended_settings:
  description:
    - The C(cloudflared) settings this host should run with, from what the probe proved, each with the command-line
      C(option), the C(value) and a one-line C(reason).
    - C(protocol) follows C(cloudflared)'s start-up pre-check (C(prechecks/checker.go)) - V(quic) when QUIC answered
      from every region (tunnel host name), else V(http2) when HTTP/2 did, else the protocol that answered from some
      region; the reason names the regions that did not answer, and for V(http2) says what it loses (WARP-routed
      UDP, ICMP and private DNS resolution, C(supervisor/tunnel.go)). RV(recommended_protocol) instead says what
      C(cloudflared) with C(--protocol auto) would run - QUIC as soon as one region answers it.
    - C(edge_ip_version) is V(auto) when that protocol answered over both address families, else V('4') or V('6') -
      with V(auto), the default since C(cloudflared) 2026.5, it may pick IPv6 on a dual-stack host whose IPv6 path
      is blocked.
    - Both values are V(null) when no tunnel protocol answered.
  returned: always
  type: dict
  sample:
    protocol:
      option: --protocol
      value: quic
      reason: "QUIC answered over IPv4 from every region (region1.v2.argotunnel.com, region2.v2.argotunnel.com), as
        cloudflared's pre-check requires"
    edge_ip_version:
      option: --edge-ip-version
      value: '4'
      reason: "QUIC (UDP 7844) answered over IPv4 only: with auto cloudflared may choose IPv6, which is blocked here"
origins:
  description: One entry per address of O(origins) - C(host), C(address), C(port), C(protocol), C(source), C(checked),
    C(ok), C(state) (V(reachable), V(refused), V(blocked), V(not checked)) and C(verdict).
  returned: when O(origins) is given
  type: list
  elements: dict
  sample:
    - {host: app.internal, address: 10.1.2.3/32, port: 8080, protocol: tcp, source: "variable origins[0]", checked: true,
       ok: true, state: reachable, verdict: reachable}
to_open:
  description:
    - What to open on the network's firewall for everything that failed, one entry per C(purpose), C(protocol) and
      C(port), with the plan's C(destinations) (CIDR blocks; the failed addresses when probing explicit targets).
  returned: always
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, protocol: udp, port: 7844, destinations: [198.41.192.7/32, "2606:4700:a0::1/128"]}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract, egress_module, origins, probe_run
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.probe_options import PROBE_ARGUMENT_SPEC


def main():
    """Probe the edge (and cloudflared's origins, if given) from this host; fails when a requirement is not met."""
    argument_spec = dict(PROBE_ARGUMENT_SPEC, resolv_conf=dict(type='path', default='/etc/resolv.conf'),
                         origins=dict(type='list', elements='dict', default=[], options=dict(
                             host=dict(type='str', required=True), port=dict(type='int', required=True),
                             protocol=dict(type='str', choices=list(egress_contract.PROTOCOLS), default='tcp'))),
                         cloudflared_config=dict(type='str', default='none'))
    module = AnsibleModule(argument_spec=argument_spec, mutually_exclusive=[('plan', 'targets')],
                           required_one_of=[('plan', 'targets')], supports_check_mode=True)
    params = module.params
    problem = probe_run.check(params)
    if problem:
        module.fail_json(msg=problem)
    allowed = []
    # cloudflared's origins (origins.py): the config's and the option's, resolved here, one connect each.
    try:
        setting = origins.check_config_setting(params['cloudflared_config'])
        from_config = origins.read_config(setting, egress_module.read_text, os.path.exists, egress_module.home_of)[1]
        wanted = list(origins.check_origins(params['origins'])) + from_config
        if wanted:
            allowed = origins.collect(wanted, keep_loopback=True)[1]
    except origins.OriginError as error:
        module.fail_json(msg='edge_probe: %s' % error)
    # The same probe the firewall modules run to verify their change (probe_run).
    output = dict(probe_run.probe(params, params['resolv_conf']), changed=False)
    if allowed:
        output['origins'] = origins.probe_rows(allowed, origins.connect_all(origins.targets(allowed), params['timeout']))
    if output['unmet_requirements']:
        module.fail_json(msg='edge_probe: not met: %s' % ' | '.join(output['unmet_requirements']), **output)
    module.exit_json(**output)


if __name__ == '__main__':
    main()
