# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # Options shared by edge_probe (POSIX) and win_edge_probe (Windows).
    DOCUMENTATION = r"""
options:
  plan:
    description:
      - The egress plan from the P(tunnelwall.cloudflared.edge_endpoints#lookup) lookup. Every address of every endpoint is
        probed with the checks that apply to it.
      - Exactly one of O(plan) and O(targets) is required.
    type: dict
  targets:
    description:
      - Explicit targets instead of a plan.
    type: list
    elements: dict
    suboptions:
      address:
        description: IPv4 or IPv6 address literal.
        type: str
        required: true
      port:
        description: Destination port.
        type: int
        required: true
      check:
        description: What to prove. V(tls) and V(https) connect over TCP first and report V(tcp) too.
        type: str
        choices: [tcp, tls, quic, https]
        required: true
      server_name:
        description: TLS or QUIC server name (SNI). Needed for V(tls), V(https) and V(quic).
        type: str
      hostname:
        description: Name to report the target under.
        type: str
      purpose:
        description: Purpose to report the target under.
        type: str
        choices: [tunnel, api, update, extra]
        default: extra
  checks:
    description:
      - What to prove. V(dns) asks the host's own nameservers the plan's SRV and A/AAAA questions and reports drift,
        and the TXT questions C(cloudflared) asks (a blocked one is a finding, an absent one is not);
        V(tcp) connects; V(tls) completes a TLS handshake on the tunnel's TCP port (SNI V(h2.cftunnel.com)),
        trusting what C(cloudflared) trusts there (see O(ca_path)), and then sends C(cloudflared)'s own post-quantum
        ClientHello (about 1.4 KB) on a second connection, which must get a ServerHello or HelloRetryRequest back
        (V(tls_size) when only the short hello is answered);
        V(quic) gets the server's first flight of a QUIC handshake on the tunnel's UDP port (SNI V(quic.cftunnel.com),
        ALPN V(argotunnel)) with Initials of C(cloudflared)'s size and its post-quantum ClientHello, and with the
        1280-byte Initials of its start-up pre-check (SNI V(probe.cftunnel.com)) beside them;
        V(https) completes a TLS handshake on TCP 443 with the host name as SNI.
      - Default is every check that applies.
    type: list
    elements: str
    choices: [dns, tcp, tls, quic, https]
  purposes:
    description: Probe only the plan's endpoints of these purposes. Default is all of them.
    type: list
    elements: str
    choices: [tunnel, api, update, extra]
  ip_version:
    description:
      - V(auto) probes the address families this host has a route for; V(4), V(6) and V(both) force them.
    type: str
    choices: [auto, '4', '6', both]
    default: auto
  timeout:
    description: Seconds each probe may take in all (connect and handshake). The module takes about this long, however many targets.
    type: float
    default: 3.0
  concurrency:
    description:
      - Probes in flight at once. A probe of a dropped address holds its slot for O(timeout), so the default covers
        200 addresses with TCP and QUIC each in one round.
    type: int
    default: 512
  validate_certs:
    description:
      - Validate the TLS certificates the edge presents, as O(ca_path) describes.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle (PEM) to validate certificates with, instead of the system store - the meaning of C(cloudflared)'s
        C(--cacert).
      - Without it, the V(tls) check on the tunnel port trusts what C(cloudflared) trusts there (its
        C(tlsconfig/certreloader.go), C(CreateTunnelConfig)) - the system store plus the three Cloudflare roots it
        embeds (C(tlsconfig/cloudflare_ca.go) - CloudFlare Origin SSL ECC CA, CloudFlare Origin SSL CA, and
        origin-pull.cloudflare.net), shipped with this collection; the V(https) checks on 443 trust the system store.
      - With it, this file alone is trusted for every check - neither the system store nor the three roots, as
        C(--cacert) does (C(tlsconfig/tlsconfig.go) builds a new pool from that file only).
    type: path
  server_names:
    description:
      - Override the server names (SNI). Keys V(tcp) and V(udp) replace the tunnel's names; a host name key replaces
        the name used for that host's HTTPS check.
    type: dict
    default: {}
  require:
    description:
      - What must work, or the task fails with a message naming what failed and what to open.
      - V(any_tunnel) (the default) needs QUIC or HTTP/2 to work; V(quic) needs a QUIC answer; V(http2) needs
        TLS on TCP 7844; V(api) and V(update) need every such host name to answer on at least one address;
        V(dns) needs the host to resolve every name of the plan. An empty list never fails.
    type: list
    elements: str
    choices: [any_tunnel, quic, http2, api, update, dns]
    default: [any_tunnel]
"""
