#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: firewalld_egress
short_description: Allow exactly the egress plan's destinations in firewalld, and optionally nothing else
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - Reconciles, in one call, a firewalld policy from the ingress zone C(HOST) to the egress zone C(ANY), named
    C(NAME-egress), with one C(hash:net) ipset per purpose and address family (C(NAME-tunnel-v4), C(NAME-tunnel-v6),
    C(NAME-api-v4) ...) and one rich rule per (purpose, protocol, port, family) accepting C(destination ipset=...).
  - It adds what is missing, removes what is stale and touches nothing it does not own. It owns the policy C(NAME-egress)
    and every ipset named C(NAME-PURPOSE-v4), C(NAME-PURPOSE-v6), C(NAME-PURPOSE-PROTOCOLPORT-v4) or
    C(NAME-PURPOSE-PROTOCOLPORT-v6); do not give your own objects such names. Your own zones, rich rules, policies and
    ipsets are never changed.
  - Each O(extra_allow) entry becomes a rich rule with C(destination address=...) (merged CIDRs) in the same policy.
  - When the rules of one purpose do not all have the same destinations, each of its (protocol, port) gets its own ipset
    (C(NAME-PURPOSE-tcp443-v4)), so nothing is allowed that was not asked for.
  - Overlapping and adjacent CIDRs are merged first (firewalld's interval sets refuse overlapping entries).
    Entries and rules are compared as sets, so a second run reports no change and runs no changing command.
  - With O(default_deny=true) the policy also holds the rule C(rule priority="32767" reject), which firewalld evaluates
    after every allow rule of the policy; connections already established (the Ansible session itself) and loopback
    traffic keep working, because firewalld accepts them before any policy. Neighbour discovery (IPv6) and, with
    O(allow_dns), DNS to the host's resolvers are allowed as well; O(allow_dhcp) adds
    C(rule family="ipv4" source-port port="68" protocol="udp" accept) and its IPv6 twin (port 546), O(allow_mld)
    C(rule family="ipv6" destination address="ff00::/8" protocol value="ipv6-icmp" accept) (firewalld 1.3 knows no MLD
    icmptype), O(allow_metadata) TCP 80 to C(169.254.169.254) and C(fd00:ec2::254).
  - Fast - the state is read over D-Bus with C(dbus-send) (milliseconds), ipset entries are replaced atomically with
    one D-Bus call per ipset, rich rules are added in one C(firewall-cmd) call and removed in another.
    Policies and ipsets can only be created in firewalld's permanent configuration, so new objects are written, complete,
    as XML files into C(/etc/firewalld/policies) and C(/etc/firewalld/ipsets) (firewalld's own format) and firewalld is
    reloaded once, keeping the rich rules other tools hold in its runtime only.
  - On any failure the module puts its own files back as they were and reloads firewalld, so neither the runtime nor
    the permanent configuration is left half-applied, and fails saying so.
  - Two runs on one host wait for each other (a lock in C(/run)).
attributes:
  check_mode:
    description: Reads firewalld's state only and reports the exact change.
    support: full
  diff_mode:
    description: Shows the policy's rich rules and every owned ipset's entries before and after.
    support: full
extends_documentation_fragment:
  - tunnelwall.cloudflared.egress_rules
  - tunnelwall.cloudflared.egress_rules.transaction
options:
  permanent:
    description:
      - V(true) - make the runtime and the permanent configuration both exactly as asked (they survive a reload and a
        reboot).
      - V(false) - change only the runtime configuration, which a reload throws away. Objects firewalld can only create
        permanently (the policy, a new ipset) are first created empty in the permanent configuration, which changes no
        traffic. Deprecated, to be removed in 1.0.0 - the transaction (O(verify), O(confirm_timeout)) already applies,
        verifies and restores on the host.
      - Ignored with O(state=absent) and O(state=reverted).
    type: bool
    default: true
  state:
    description:
      - V(present) - reconcile as described.
      - V(absent) - delete every object the module owns (policy, ipsets, their files and firewalld's C(.xml.old) backups
        of them) and reload firewalld; the ruleset is as before the first run.
      - V(reverted) - throw away what a O(permanent=false) run changed - reload firewalld, which restores the permanent
        configuration - and delete the empty objects such a run created. Nothing happens (changed=false) when the runtime
        already equals the permanent configuration. Deprecated with O(permanent=false), to be removed in 1.0.0.
    type: str
    choices: [present, absent, reverted]
    default: present
notes:
  - With O(permanent=true) the transaction applies a change of existing objects to the runtime first, verifies
    (O(verify)), and only then writes the permanent configuration. New objects are written complete to the permanent
    configuration before the verification (firewalld loads them with a reload); the pending record holds their files
    as they were, so a failed verification, the dead-man revert and the boot check take them back.
    O(permanent=false) never commits to the permanent configuration; O(state=reverted) then throws the runtime change
    away (both deprecated).
  - A reload - when objects are created or deleted, with O(state=absent) and O(state=reverted), and when rolling back -
    also discards runtime-only changes other tools made to firewalld. firewalld keeps established connections over a reload.
  - Needs root (firewalld's D-Bus interface), C(dbus-send) (D-Bus's tools, installed with firewalld) and firewalld 0.9
    or later (policies). The configuration directory is C(/etc/firewalld).
  - Check mode reads firewalld's state only (D-Bus queries) and reports the exact change; diff mode shows the policy's
    rich rules and every owned ipset's entries before and after (the runtime, and the permanent configuration too with
    O(permanent=true)).
seealso:
  - module: tunnelwall.cloudflared.edge_probe
  - plugin: tunnelwall.cloudflared.edge_endpoints
    plugin_type: lookup
  - name: firewalld policies
    description: Policy objects, the ingress zone HOST and the egress zone ANY.
    link: https://firewalld.org/documentation/concepts.html
"""

EXAMPLES = r"""
- name: Resolve the egress plan once
  ansible.builtin.set_fact:
    egress_plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
  run_once: true

- name: Allow cloudflared's destinations (nothing is denied yet)
  tunnelwall.cloudflared.firewalld_egress:
    rules: "{{ egress_plan.rules }}"

- name: Allow only cloudflared, DNS and an NTP server; reject everything else going out
  tunnelwall.cloudflared.firewalld_egress:
    rules: "{{ egress_plan.rules }}"
    default_deny: true
    extra_allow:
      - {protocol: udp, port: 123, destinations: [203.0.113.123]}

- name: Apply, prove from the host that the tunnel edge answers, and keep the change only then
  tunnelwall.cloudflared.firewalld_egress:
    rules: "{{ egress_plan.rules }}"
    default_deny: true
    verify:
      plan: "{{ egress_plan }}"
      require: [any_tunnel]

- name: Remove everything the module made
  tunnelwall.cloudflared.firewalld_egress:
    state: absent
"""

RETURN = r"""
# Every firewall module returns these too; they are described once, in tunnelwall.cloudflared.firewall_egress:
module: {description: "V(tunnelwall.cloudflared.firewalld_egress) - see RV(tunnelwall.cloudflared.firewall_egress#module:module).", returned: always, type: str}
verification: {description: "The probe's result - see RV(tunnelwall.cloudflared.firewall_egress#module:verification).", returned: when verified, type: dict}
origins: {description: "cloudflared's origins - see RV(tunnelwall.cloudflared.firewall_egress#module:origins).", returned: always, type: dict}
transaction: {description: "How the change ran - see RV(tunnelwall.cloudflared.firewall_egress#module:transaction).", returned: always, type: dict}
rolled_back: {description: "See RV(tunnelwall.cloudflared.firewall_egress#module:rolled_back).", returned: failed during the change, type: bool}
policy:
  description: The name of the policy the module owns.
  returned: always
  type: str
  sample: tunnelwall-egress
ipsets:
  description: The ipsets the module owns after the run (with O(state=present), the ones the rules need).
  returned: always
  type: list
  elements: str
  sample: [tunnelwall-api-v4, tunnelwall-tunnel-v4, tunnelwall-tunnel-v6]
rich_rules:
  description: The policy's rich rules after the run, in firewalld's canonical form, sorted.
  returned: always
  type: list
  elements: str
  sample:
    - rule family="ipv4" destination ipset="tunnelwall-tunnel-v4" port port="7844" protocol="tcp" accept
    - rule priority="32767" reject
added:
  description:
    - The allow rules the run added to the runtime configuration (would add, in check mode), one per destination, in
      the shape every firewall module of the collection returns (RV(tunnelwall.cloudflared.firewall_egress#module:added))
      - C(destination) an address or CIDR block as firewalld stores it.
    - An ipset rule's purpose is in the ipset's name; a rule to an address is V(dns) (port 53), V(metadata) (the
      metadata service) or V(extra) (O(extra_allow)). Host services without a destination (DHCP, MLD, neighbour
      discovery) and the reject rule are in RV(firewalld_added).
  returned: always
  type: list
  elements: dict
  sample: [{purpose: tunnel, family: ipv4, protocol: tcp, port: 7844, destination: 198.51.100.14}]
removed:
  description: The allow rules the run removed from the runtime configuration (would remove), in the same shape as RV(added).
  returned: always
  type: list
  elements: dict
  sample: [{purpose: tunnel, family: ipv4, protocol: tcp, port: 7844, destination: 198.51.100.13}]
firewalld_added:
  description: What the run added in firewalld's own terms - ipset entries and rich rules (would add, in check mode).
  returned: always
  type: dict
  contains:
    entries:
      description: Per ipset, the entries added.
      type: dict
      sample: {tunnelwall-tunnel-v4: [198.51.100.14]}
    rich_rules:
      description: Rich rules added.
      type: list
      elements: str
firewalld_removed:
  description:
    - What the run removed in firewalld's own terms (would remove, in check mode), in the same form as
      RV(firewalld_added) - C(entries) per ipset and C(rich_rules).
  returned: always
  type: dict
  sample: {entries: {tunnelwall-tunnel-v4: [198.51.100.13]}, rich_rules: []}
reloaded:
  description: Whether firewalld was (would be) reloaded.
  returned: always
  type: bool
nameservers:
  description: The resolvers O(allow_dns) allowed.
  returned: always
  type: list
  elements: str
  sample: [203.0.113.53]
commands:
  description:
    - The changing operations in order (C(firewall-cmd) and C(dbus-send) calls, files written and removed); in check mode,
      the steps that would run. Empty when nothing changed.
  returned: always
  type: list
  elements: list
firewalld_version:
  description: The version of the firewalld the module talked to.
  returned: always
  type: str
  sample: 1.3.3
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    egress_module, egress_transaction, firewalld_apply, firewalld_policy)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_spec import (
    EXTRA_ALLOW_SPEC, REQUIRED_IF, RULES_SPEC, TRANSACTION_SPEC)

ARGUMENT_SPEC = dict(
    TRANSACTION_SPEC,
    rules=RULES_SPEC,
    extra_allow=EXTRA_ALLOW_SPEC,
    permanent=dict(type='bool', default=True),
    state=dict(type='str', default='present', choices=['present', 'absent', 'reverted']),
)
DEPRECATED = ('the runtime-only change (permanent=false) and state=reverted are deprecated: the transaction already '
              'applies to the runtime first and restores it unless the change is verified and confirmed - use verify '
              'and confirm_timeout instead')


def main():
    """Apply the egress policy to firewalld in one transaction (egress_transaction) and report the change."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    request, verify, nameservers = egress_module.prepare(module, 'firewalld', 'firewalld_egress', firewalld_policy.render_problem)
    if os.geteuid() != 0:
        # As ufw_egress and nftables_egress: firewalld may answer D-Bus reads, but the files and the transaction
        # record under /etc/firewalld need root - say so instead of a PermissionError half-way.
        egress_module.fail(module, 'firewalld_egress', egress_module.NEEDS_ROOT)
    if request.state == 'reverted' or (request.state == 'present' and not module.params['permanent']):
        module.deprecate(DEPRECATED, version='1.0.0', collection_name='tunnelwall.cloudflared')
    backend = firewalld_apply.FirewalldBackend(request, nameservers, egress_module.command_runner(module),
                                               permanent=module.params['permanent'])
    result = dict(changed=False, policy=firewalld_policy.policy_name(request.name), nameservers=nameservers, reloaded=False)
    try:
        dummy, result['firewalld_version'] = backend.firewalld.state()
        outcome = egress_transaction.run(backend, request, verify, module.check_mode, which=module.get_bin_path,
                                         command=backend.firewalld.run)
    except egress_transaction.EgressError as error:
        egress_module.fail(module, 'firewalld_egress', str(error), commands=[list(c) for c in backend.firewalld.commands],
                           origins=request.origin_report, **dict(result, **error.details))
    if outcome['transaction'].get('settled'):
        module.warn(outcome['transaction']['settled'])
    result.update(firewalld_apply.result(backend, module.check_mode, module._diff),
                  verification=outcome['verification'], transaction=outcome['transaction'],
                  origins=request.origin_report)
    egress_module.succeed(module, 'firewalld_egress', **result)


if __name__ == '__main__':
    main()
