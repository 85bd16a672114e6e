#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This file holds only the documentation: the module is win_firewall_egress.ps1, behind
# the win_firewall_egress action plugin.

DOCUMENTATION = r"""
module: win_firewall_egress
short_description: Allow exactly the egress plan in the Windows firewall, optionally block the rest
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - Keeps one group of outbound allow rules in the Windows firewall, one rule per purpose, protocol and port of the
    egress plan with all its remote addresses, and reconciles the whole group in one call - adds what is missing,
    updates what changed, removes what is stale, and touches no rule outside the group.
  - With O(default_deny=true) the default outbound action of O(profiles) becomes C(Block); the action found before is
    kept in the registry and given back with O(state=absent) or O(default_deny=false).
  - Windows rewrites addresses (V(198.51.100.7/32) reads back as V(198.51.100.7), a V(/24) as a dotted mask); both
    sides are compared in CIDR form, so a second run changes nothing.
  - An action plugin validates the options and computes the wanted rules on the controller; the host needs
    PowerShell 5.1 and the NetSecurity module that ships with Windows.
  - On any error the default actions, the rules this run added and the rules it changed are put back.
extends_documentation_fragment:
  - tunnelwall.cloudflared.egress_rules
options:
  name:
    description: Group of the rules this module owns; every rule's display name starts with it.
    type: str
    default: tunnelwall cloudflared
  default_deny:
    description: Block every other outbound connection in O(profiles). Refused when the rules hold no tunnel rule.
    type: bool
    default: false
  profiles:
    description: Firewall profiles the rules and the default action apply to.
    type: list
    elements: str
    default: [Domain, Private, Public]
  allow_dns:
    description: With O(default_deny), also allow UDP and TCP 53 to O(dns_servers).
    type: bool
    default: true
  dns_servers:
    description: The resolvers Windows uses; needed with O(default_deny) and O(allow_dns).
    type: list
    elements: str
    default: []
  state:
    description: V(absent) removes the group's rules and gives back the default outbound actions.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    description: Reports the exact change and changes nothing.
    support: full
  diff_mode:
    description: The group's rules and the default outbound actions before and after.
    support: full
  platform:
    description: Target operating system.
    support: full
    platforms: windows
  action:
    description: An action plugin validates the options and computes the wanted rules on the controller.
    support: full
notes:
  - Not run on Windows in this project's CI, which has no PowerShell runtime; the tests parse the PowerShell and run the
    controller's half (validation, the rules handed to the host) for real.
seealso:
  - module: tunnelwall.cloudflared.win_edge_probe
"""

EXAMPLES = r"""
- name: Allow exactly the tunnel edge, the API and the update host, block the rest
  tunnelwall.cloudflared.win_firewall_egress:
    rules: "{{ egress_plan.rules }}"
    default_deny: true
    dns_servers: [10.0.0.53]

- name: Remove the rules and give back the default outbound action
  tunnelwall.cloudflared.win_firewall_egress:
    state: absent
"""

RETURN = r"""
added:
  description: Display names of the rules added.
  returned: always
  type: list
  elements: str
  sample: ["tunnelwall cloudflared: tunnel udp/7844"]
removed:
  description: Display names of the rules removed.
  returned: always
  type: list
  elements: str
updated:
  description: Display names of the rules whose addresses, protocol or port changed.
  returned: always
  type: list
  elements: str
outbound_action:
  description: Default outbound action per profile, before and after.
  returned: always
  type: dict
  sample: {before: {Public: Allow}, after: {Public: Block}}
"""
