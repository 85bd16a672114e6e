# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # The desired state every firewall module takes: the plan's rules and extra destinations.
    DOCUMENTATION = r"""
options:
  rules:
    description:
      - What to allow - the C(rules) of the egress plan from the P(tunnelwall.cloudflared.edge_endpoints#lookup) lookup,
        one entry per (purpose, protocol, port) with its destinations.
      - Required with O(state=present); an empty list removes every allow rule the module made. Ignored with
        O(state=absent).
    type: list
    elements: dict
    suboptions:
      purpose:
        description: What the rule is for - V(tunnel), V(api), V(update), V(extra) or another lower-case word; it names the module's objects.
        type: str
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        required: true
      port:
        description: Destination port, 1 to 65535.
        type: int
        required: true
      ipv4:
        description: IPv4 destinations, as addresses or CIDR blocks without host bits (V(198.51.100.7/32)).
        type: list
        elements: str
        default: []
      ipv6:
        description: IPv6 destinations, as addresses or CIDR blocks without host bits (V(2001:db8::7/128)).
        type: list
        elements: str
        default: []
  extra_allow:
    description:
      - More destinations to allow, for example an NTP server, a package mirror or a proxy under O(default_deny).
    type: list
    elements: dict
    default: []
    suboptions:
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        required: true
      port:
        description: Destination port, 1 to 65535.
        type: int
        required: true
      destinations:
        description: IPv4 and IPv6 addresses or CIDR blocks (no host names - a firewall cannot resolve them).
        type: list
        elements: str
        required: true
"""
