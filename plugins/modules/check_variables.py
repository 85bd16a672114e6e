#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This file holds only the documentation: check_variables is an action plugin that runs on the
# controller (plugins/action/check_variables.py); there is no module to run on a host.

from __future__ import annotations

DOCUMENTATION = r"""
module: check_variables
short_description: Fail on egress_firewall_* and tunnelwall_* variables that nothing reads, naming the closest known one
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - A misspelt variable is a setting the run silently ignores - C(-e egress_firewall_default_denny=true) would run
    without a default deny. This task fails the host on any variable whose name starts with C(egress_firewall_) or
    C(tunnelwall_) and that is not one of the collection's, and names the known variable it most likely meant.
  - "The known names: the options of the role's C(meta/argument_specs.yml) (its single source of truth) and its output
    C(egress_firewall_result); the C(tunnelwall_edge_*) variables documented by the
    P(tunnelwall.cloudflared.edge_endpoints#lookup) lookup; the playbooks' own C(tunnelwall_*) variables (listed in the
    README); O(known); and the names in the variable C(tunnelwall_known_variables) (a list; a trailing V(*) accepts
    every name with that prefix), for variables of your own that share the prefixes."
  - With O(lookup_options), also refuses an unknown option of the lookup and returns the options this host's plan is
    resolved with (RV(lookup_options), RV(lookup_key)), so that a play resolves one plan per distinct set of options.
  - The first task of the P(tunnelwall.cloudflared.egress_firewall#role) role and of the collection's playbooks; it
    runs on the controller and does not connect to the host.
options:
  lookup_options:
    description:
      - The host's C(egress_firewall_lookup_options). When given, the task checks their names and returns the whole
        set of lookup options for this host - every option a C(tunnelwall_edge_*) variable sets, from this host's
        variables or the lookup's default, overridden by these.
      - Leave out when the host needs no plan resolved.
    type: raw
  known:
    description: More variable names to accept (a trailing V(*) for a prefix), for variables of your own that share the prefixes.
    type: list
    elements: str
    default: []
  targets_warning:
    description:
      - Warn when C(tunnelwall_targets) is not set (the collection's playbooks then run on every host of the
        inventory). Ansible shows the warning once, however many hosts.
    type: bool
    default: false
  purposes:
    description:
      - The role's C(egress_firewall_purposes) - a list, or a string of names separated by commas or line ends (C(-e),
        an AWX survey). Every item must be one of V(tunnel), V(api), V(update), V(extra); returned as a clean list in
        RV(purposes).
    type: raw
  require:
    description:
      - The role's C(egress_firewall_require), given like O(purposes). Every item must be one of V(any_tunnel),
        V(quic), V(http2), V(api), V(update), V(dns), V(origins); returned as a clean list in RV(require).
    type: raw
# The collection's fragments first: of two fragments describing one attribute, the first listed wins.
extends_documentation_fragment:
  - tunnelwall.cloudflared.attributes_controller
  - tunnelwall.cloudflared.attributes_read_only
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  bypass_host_loop:
    description: Runs for each host, whose variables differ.
    support: none
  platform:
    description: Runs on the controller only, for any managed host.
    support: full
    platforms: all
notes:
  - Only the variables' names are read, never their values, except the C(tunnelwall_edge_*) ones with O(lookup_options).
seealso:
  - plugin: tunnelwall.cloudflared.edge_endpoints
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Refuse a typo before anything changes
  tunnelwall.cloudflared.check_variables:

- name: Accept a variable of your own with the same prefix, and get this host's lookup options
  tunnelwall.cloudflared.check_variables:
    known: [tunnelwall_owner]
    lookup_options: "{{ egress_firewall_lookup_options | default({}) }}"
  register: checked
"""

RETURN = r"""
unknown:
  description: The unknown variable names (the task failed when there are any).
  returned: always
  type: list
  elements: str
  sample: [egress_firewall_default_denny]
lookup_options:
  description: The lookup options this host's plan is resolved with; V(null) without O(lookup_options).
  returned: always
  type: dict
  sample: {region: fed, ip_version: both, nameservers: []}
lookup_key:
  description: The same options as one string (JSON, keys sorted) - equal for hosts that get the same plan.
  returned: always
  type: str
  sample: '{"generation":"v2","region":"fed"}'
windows:
  description:
    - Whether the host is Windows, told without connecting to it - its C(ansible_connection) (V(winrm), V(psrp)), its
      C(ansible_shell_type) (V(powershell), V(cmd)) or gathered facts. The collection's one test of it.
  returned: always
  type: bool
  sample: false
purposes:
  description: O(purposes) as a list.
  returned: when O(purposes) is given
  type: list
  elements: str
  sample: [tunnel, api]
require:
  description: O(require) as a list.
  returned: when O(require) is given
  type: list
  elements: str
  sample: [any_tunnel, origins]
"""
