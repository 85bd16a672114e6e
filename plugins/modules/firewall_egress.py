#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This file holds only the documentation: firewall_egress is an action plugin (plugins/action/firewall_egress.py)
# that runs the firewall module of the backend it is given.

from __future__ import annotations

DOCUMENTATION = r"""
module: firewall_egress
short_description: Apply an egress plan with the firewall module of the host's backend, chosen by name
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - One task for every firewall, like C(ansible.builtin.package) for package managers - the
    P(tunnelwall.cloudflared.egress_firewall#role) role's apply step. Given the backend's name, it runs
    M(tunnelwall.cloudflared.firewalld_egress), M(tunnelwall.cloudflared.ufw_egress),
    M(tunnelwall.cloudflared.nftables_egress) or M(tunnelwall.cloudflared.win_firewall_egress) with O(options), the
    plan's rules of O(purposes) and, with O(verify), a verification of the same plan limited to those purposes; it
    returns that module's result unchanged.
  - Before any module runs it refuses, changing nothing, a host that O(found) says cannot be reached, an empty
    O(backend) (no firewall found), and a default deny whose rules hold no tunnel destination.
options:
  backend:
    description:
      - V(firewalld), V(ufw), V(nftables) or V(windows). Empty when M(tunnelwall.cloudflared.egress_firewall_info)
        found no firewall to write - the task then fails saying what it found.
    type: str
    default: ''
  found:
    description: The result of M(tunnelwall.cloudflared.egress_firewall_info) for the host, when the backend was searched.
    type: dict
  plan:
    description: The host's egress plan (P(tunnelwall.cloudflared.edge_endpoints#lookup)); needed when O(options) say C(state=present) (the default).
    type: dict
  purposes:
    description: Which of the plan's rules to allow (and to verify).
    type: list
    elements: str
    default: []
  verify:
    description:
      - Verify after applying - the firewall module's C(verify) option without its C(plan) (C(require), C(timeout),
        C(ca_path)); the plan is O(plan) limited to O(purposes). Leave out to apply without verifying.
    type: dict
  options:
    description:
      - The firewall module's other options (C(name), C(state), C(default_deny), C(allow_dns), C(extra_allow),
        C(origins), C(confirm_timeout), ...); C(profiles) is passed to Windows only.
    type: dict
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    description: The action plugin picks the module and runs it on the host.
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    description: As the chosen module.
    support: full
  diff_mode:
    description: As the chosen module.
    support: full
  platform:
    description: Linux hosts (firewalld, ufw, nftables) and Windows.
    support: full
    platforms: posix, windows
seealso:
  - module: tunnelwall.cloudflared.egress_firewall_info
"""

EXAMPLES = r"""
- name: Find the host's firewall
  tunnelwall.cloudflared.egress_firewall_info:
  register: found

- name: Allow the tunnel edge with whatever firewall the host runs, verified
  tunnelwall.cloudflared.firewall_egress:
    backend: "{{ found.backend }}"
    found: "{{ found }}"
    plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
    purposes: [tunnel, api]
    verify: {require: [any_tunnel]}
    options:
      name: tunnelwall
      state: present
      default_deny: true
"""

RETURN = r"""
msg:
  description: Why the task refused to run, or the chosen module's message.
  returned: on failure
  type: str
refused:
  description: V(true) when the task refused before running any module (nothing was changed).
  returned: when refused
  type: bool
"""
