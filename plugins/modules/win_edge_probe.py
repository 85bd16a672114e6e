#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This file holds only the documentation: the module is win_edge_probe.ps1, behind
# the win_edge_probe action plugin.

DOCUMENTATION = r"""
module: win_edge_probe
short_description: Prove from a Windows host what of the Cloudflare Tunnel edge it can reach
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - The Windows twin of M(tunnelwall.cloudflared.edge_probe), with the same options and the same return values.
  - DNS through C(Resolve-DnsName) (SRV and TXT included), TCP and TLS through .NET, QUIC by sending the Initial
    datagrams C(cloudflared) sends first (its size, its post-quantum ClientHello over two Initials, and beside them its
    start-up pre-check's 1280-byte Initials; after two thirds of O(timeout) without an answer, a single Initial of the
    tunnel's size and one of 1200 bytes, to tell a size problem from a blocked port), all concurrently, each bounded by
    O(timeout).
  - The TLS check on 7844 trusts the Windows store plus the three Cloudflare roots C(cloudflared) embeds (the
    controller sends them), or O(ca_path) alone, and sends C(cloudflared)'s own ClientHello (built on the controller)
    on a second connection; the controller reads the answer (V(tls_size) when only the short hello was answered).
  - Windows PowerShell 5.1 has no AES-GCM, which QUIC Initial protection needs. So an action plugin builds every
    Initial datagram on the controller (the same Python code M(tunnelwall.cloudflared.edge_probe) runs on POSIX hosts),
    the host sends them and returns what came back, and the controller reads the answers and writes the report. The
    host needs nothing but PowerShell 5.1 or later.
extends_documentation_fragment:
  - tunnelwall.cloudflared.edge_probe
  - tunnelwall.cloudflared.attributes_read_only
attributes:
  platform:
    description: Target operating system.
    support: full
    platforms: windows
  action:
    description: An action plugin builds the QUIC datagrams and reads the answers on the controller.
    support: full
notes:
  - Not tested on Windows in this project's CI, which has no PowerShell runtime; the tests parse the PowerShell and C#
    sources and run the controller's half (the datagrams it builds, the report it writes from a module result) for real.
  - The V(dns) check uses the DNS servers Windows is configured with (C(Get-DnsClientServerAddress)).
seealso:
  - module: tunnelwall.cloudflared.edge_probe
"""

EXAMPLES = r"""
- name: Prove what each Windows host reaches
  tunnelwall.cloudflared.win_edge_probe:
    plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
  register: probe

- name: Insist on QUIC
  tunnelwall.cloudflared.win_edge_probe:
    plan: "{{ egress_plan }}"
    require: [quic]
"""

RETURN = r"""
results:
  description: One entry per target and check, as M(tunnelwall.cloudflared.edge_probe) returns them.
  returned: always
  type: list
  elements: dict
summary:
  description: Counts of ok and failed results per purpose, check, protocol and family.
  returned: always
  type: list
  elements: dict
recommended_protocol:
  description: V(quic), V(http2) or V(none).
  returned: always
  type: str
  sample: quic
recommendation_reason:
  description: Why.
  returned: always
  type: str
families:
  description: The address families probed.
  returned: always
  type: list
  elements: str
dns:
  description: What the host's resolver says; see M(tunnelwall.cloudflared.edge_probe).
  returned: always
  type: dict
unmet_requirements:
  description: One message per requirement of O(require) that failed; see RV(tunnelwall.cloudflared.edge_probe#module:unmet_requirements).
  returned: always
  type: list
  elements: str
unmet_detail:
  description: The same requirements as data; see RV(tunnelwall.cloudflared.edge_probe#module:unmet_detail).
  returned: always
  type: list
  elements: dict
recommended_settings:
  description: The C(cloudflared) settings (C(protocol), C(edge_ip_version)) for the host; see M(tunnelwall.cloudflared.edge_probe).
  returned: always
  type: dict
to_open:
  description: What to open for everything that failed; see M(tunnelwall.cloudflared.edge_probe).
  returned: always
  type: list
  elements: dict
"""
