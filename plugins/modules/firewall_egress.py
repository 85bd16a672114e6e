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

# The result every firewall module of the collection returns (firewalld_egress, ufw_egress, nftables_egress,
# win_firewall_egress) is described in full here, once: each module's RETURN lists these keys with a pointer here
# (ansible-core 2.19 merges no RETURN fragments) and describes its own keys.
RETURN = r"""
msg:
  description: Why the task refused to run, or the chosen module's message.
  returned: on failure
  type: str
refused:
  description: V(true) when the task refused before running any module (nothing was changed).
  returned: when refused
  type: bool
module:
  description:
    - The fully qualified name of the module that reported the result - the firewall module O(backend) chose, or
      V(tunnelwall.cloudflared.firewall_egress) itself when it refused or its options were wrong. Every firewall module
      returns it in every result its own code reports, success or failure.
    - A failed result without it did not come from the module's code - a traceback, a killed module, a lost
      connection, or Ansible's own checks of the options.
  returned: always
  type: str
  sample: tunnelwall.cloudflared.ufw_egress
added:
  description:
    - The allow rules the run added (in check mode, would add), one item per destination and sorted - the same shape
      on every backend. Each module's own RETURN says how its firewall writes a C(destination) and what else it
      reports in its own terms (for example RV(tunnelwall.cloudflared.firewalld_egress#module:firewalld_added)).
  returned: always (win_firewall_egress - when the module compared the rules)
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, family: ipv4, protocol: udp, port: 7844, destination: 198.41.192.7}
  contains:
    purpose:
      description:
        - What the rule is for - the rule's V(purpose) in O(plan) (V(tunnel), V(api), V(update), V(origin)), V(extra)
          for C(extra_allow), V(dns) for the resolvers, V(metadata), and on ufw V(dhcp).
      type: str
    family:
      description: V(ipv4) or V(ipv6).
      type: str
    protocol:
      description: V(tcp) or V(udp).
      type: str
    port:
      description: The destination port.
      type: int
    destination:
      description: An address, a CIDR block or (nftables) a C(first-last) range, as the firewall stores it.
      type: str
removed:
  description: The allow rules the run removed (in check mode, would remove), in the same shape as RV(added).
  returned: always (win_firewall_egress - when the module compared the rules)
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, family: ipv6, protocol: tcp, port: 7844, destination: "2606:4700:a0::1"}
verification:
  description:
    - The probe's result after the change - the keys M(tunnelwall.cloudflared.edge_probe) returns
      (M(tunnelwall.cloudflared.win_edge_probe) on Windows) - when O(verify) was given and not in check mode; also in
      the result of a run whose verification failed.
  returned: when verified
  type: dict
  sample: {recommended_protocol: quic, unmet_requirements: [], unmet_detail: []}
  contains:
    recommended_protocol:
      description: See RV(tunnelwall.cloudflared.edge_probe#module:recommended_protocol).
      type: str
    unmet_requirements:
      description: What of C(require) failed - see RV(tunnelwall.cloudflared.edge_probe#module:unmet_requirements).
      type: list
      elements: str
    unmet_detail:
      description: The same as data - see RV(tunnelwall.cloudflared.edge_probe#module:unmet_detail).
      type: list
      elements: dict
    origins:
      description:
        - Linux - per origin address, what the check after the change found - see
          RV(tunnelwall.cloudflared.edge_probe#module:origins).
      type: list
      elements: dict
origins:
  description: cloudflared's origins allowed under C(default_deny), found and resolved on the host.
  returned: always
  type: dict
  sample: {allowed: [{host: app.internal, addresses: [10.1.2.3/32], port: 8080, protocol: tcp,
           source: "/etc/cloudflared/config.yml ingress[0] (hostname app.example.com) (http)"}],
           config: {setting: auto, path: /etc/cloudflared/config.yml, how: "cloudflared's default search", token: false,
           rules: 2, warp_routing: false}, notes: [], warnings: [], checked: true}
  contains:
    allowed:
      description:
        - One item per origin - C(host), C(addresses) as resolved on the host, C(port), C(protocol), C(source) (the
          config file and ingress rule, or the variable).
      type: list
      elements: dict
    config:
      description:
        - The cloudflared config read - C(setting), C(path), C(how) it was found, C(token) for a C(--token) run,
          C(rules), C(warp_routing).
      type: dict
    notes:
      description: Ingress rules that need nothing, or cannot be bounded.
      type: list
      elements: str
    warnings:
      description:
        - What the default deny will block although cloudflared needs it - a config with C(warp-routing) and no
          C(private_networks), a C(--token) run (ingress in the dashboard) and no C(origins).
      type: list
      elements: str
    checked:
      description:
        - Whether any origin is connected to after the change (a TCP origin or C(verify.origins) - on Linux and on
          Windows). The verification's C(origins) list says, per address, what that check found.
      type: bool
transaction:
  description: How the change ran on the host.
  returned: always
  type: dict
  sample: {confirm_timeout: 300, armed: {how: process, pid: 4242, unit: null, confirm_timeout: 300}, confirmed: true,
           restored: false, settled: null, waited_for_lock: false}
  contains:
    confirm_timeout:
      description: The dead-man revert's delay in seconds (C(confirm_timeout)); V(0) - none.
      type: int
    armed:
      description:
        - The dead-man revert, V(null) when none was armed - C(how) (V(systemd) with its timer C(unit), V(process)
          with its C(pid), or on Windows V(scheduled_task) with C(task_path), C(task_name) and C(at)) and
          C(confirm_timeout).
      type: dict
    waited_for_lock:
      description: Whether the run waited for another run's change on the host.
      type: bool
    settled:
      description: What a dead earlier run left pending and this run restored first (also a warning), else V(null).
      type: str
    restored:
      description: Whether this run restored the state before it (a failed verification or change).
      type: bool
    confirmed:
      description: Whether the change was confirmed - the pending record removed and the dead-man revert cancelled.
      type: bool
    id:
      description: Windows - the id of the record and of the scheduled task.
      type: str
rolled_back:
  description:
    - In a failed run, whether the host is back at the state before the run - every file, live rule and default policy
      the run changed put back (on Windows, by this run or already by its scheduled task).
  returned: failed during the change
  type: bool
  sample: true
"""
