#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ufw_egress
short_description: Allow exactly the Cloudflare Tunnel egress plan in ufw, and optionally deny all other outgoing traffic
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - Reconciles, in one call, the outgoing allow rules C(cloudflared) needs - the O(rules) of the egress plan from the
    P(tunnelwall.cloudflared.edge_endpoints#lookup) lookup - with the rules ufw has. Missing rules are added, stale ones
    removed, and rules this module does not own are never touched.
  - Every rule it owns carries the ufw comment C(NAME:PURPOSE) (see O(name)), so C(ufw status) shows where it comes
    from. Ownership is decided by that comment alone. One ufw rule is written per destination of O(rules), for the
    rule's protocol and port (a host without its prefix, as ufw writes it); O(extra_allow) rules are tagged
    C(NAME:extra). IPv6 destinations are skipped with a warning when ufw's IPv6 support is off (C(IPV6=no) in
    C(/etc/default/ufw)).
  - Under O(default_deny), O(allow_dhcp) writes C(allow out proto udp from any port 68 to any port 67) and its IPv6 twin
    (546 to 547), tagged C(NAME:dhcp); O(allow_metadata) TCP 80 to C(169.254.169.254) and C(fd00:ec2::254), tagged
    C(NAME:metadata). O(allow_mld) writes nothing - ufw user rules cannot name ICMPv6 types, and ufw's own
    C(before6.rules) already accept MLD (types 131, 132, 143) from link-local sources, whatever the option says.
  - Fast, whatever the number of rules - no ufw process per rule. The module writes C(/etc/ufw/user.rules) and
    C(/etc/ufw/user6.rules) itself, byte for byte as the ufw command line would, and loads them with one
    C(iptables-restore -n) and one C(ip6tables-restore -n), which replace ufw's user chains atomically without dropping
    a packet. C(ufw status), C(ufw delete) and C(ufw reload) keep working on these rules as on any other.
  - One transaction. ufw's own lock (C(/run/ufw.lock)) is held while the files are read, written and loaded, and the
    host-wide lock of every egress change (C(/run/tunnelwall/egress.lock), see O(lock_timeout)) serialises concurrent
    runs, O(state=reverted) included. The previous content of every file is recorded first (the transaction's pending
    record); the new rules are checked with C(iptables-restore --test) before anything is written; on any failure every
    file is put back and what was loaded is loaded again, so the firewall is never left half applied.
  - With O(default_deny), the default outgoing policy becomes V(reject) after the allowances are in place, with
    C(ufw default reject outgoing) (run only when the policy changes). ufw accepts established and related traffic
    and loopback ahead of every rule, so running connections - the Ansible SSH session among them - survive.
  - The outgoing policy found before the module first denied is remembered in C(/etc/ufw/NAME-egress.json), next to
    the ufw configuration it describes, and put back by O(state=absent) or O(default_deny=false).
attributes:
  check_mode:
    description: Computes the exact change (rules to add and remove, the policy) and writes nothing.
    support: full
  diff_mode:
    description: The owned rules and the default outgoing policy, before and after.
    support: full
extends_documentation_fragment:
  - tunnelwall.cloudflared.egress_rules
  - tunnelwall.cloudflared.egress_rules.transaction
options:
  state:
    description:
      - V(present) makes the owned rules exactly those asked for.
      - V(absent) removes every owned rule and puts back the outgoing policy this module replaced.
      - V(reverted) undoes the last confirmed change a run with this O(name) made since boot - files, outgoing policy
        and live rules - with the restore of a failed run; lines other writers (an admin's C(ufw allow), fail2ban) changed
        since stay. Nothing to undo (no change since boot, or already reverted) gives changed=false.
        The P(tunnelwall.cloudflared.egress_firewall#role) role no longer needs it - O(verify) restores in the same run.
    type: str
    choices: [present, absent, reverted]
    default: present
  on_inactive:
    description:
      - What to do when ufw is installed but not enabled (C(ENABLED=no) in C(/etc/ufw/ufw.conf)), where rules protect nothing.
      - V(fail) fails and changes nothing, so a host that looks protected but is not is never reported as done.
      - V(configure) writes ufw's files only (rules and policy); they take effect at C(ufw enable). Nothing is loaded.
      - O(state=absent) always works on an inactive ufw.
    type: str
    choices: [fail, configure]
    default: fail
notes:
  - Needs root, and ufw 0.36 or later (its file format). Tested with ufw 0.36.2 on Debian 12.
  - New rules are placed after the module's existing rules, or at the end of ufw's rules when it has none, so they keep
    their place relative to the user's own rules. ufw applies the first match, so a C(deny out) rule of the user
    placed before them wins.
  - A rule is present only when its lines are exactly what the module writes; an owned rule edited by hand is replaced.
    A user's own rule for the same destination is left alone and does not replace the owned one.
  - The record of the last confirmed change, which O(state=reverted) undoes, is kept in
    C(/run/tunnelwall/last-ufw-NAME.json) until the next change or reboot.
seealso:
  - plugin: tunnelwall.cloudflared.edge_endpoints
    plugin_type: lookup
  - module: tunnelwall.cloudflared.edge_probe
  - name: ufw manual
    description: The ufw command line and its files.
    link: https://manpages.debian.org/bookworm/ufw/ufw.8.en.html
"""

EXAMPLES = r"""
- name: Resolve the egress plan once
  ansible.builtin.set_fact:
    egress_plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
  run_once: true

- name: Allow exactly what cloudflared needs and deny every other outgoing connection
  tunnelwall.cloudflared.ufw_egress:
    rules: "{{ egress_plan.rules }}"
    default_deny: true
  become: true

- name: Also allow a proxy, and DNS only to two given resolvers
  tunnelwall.cloudflared.ufw_egress:
    rules: "{{ egress_plan.rules }}"
    default_deny: true
    dns_servers: [203.0.113.53, 2001:db8::53]
    extra_allow:
      - {protocol: tcp, port: 3128, destinations: [203.0.113.10]}
  become: true

- name: Undo that change (for example because cloudflared could no longer reach the edge)
  tunnelwall.cloudflared.ufw_egress:
    state: reverted
  become: true

- name: Remove every rule of the module and put back the original outgoing policy
  tunnelwall.cloudflared.ufw_egress:
    state: absent
  become: true
"""

RETURN = r"""
# Every firewall module returns these too; they are described once, in tunnelwall.cloudflared.firewall_egress:
module: {description: "V(tunnelwall.cloudflared.ufw_egress) - see RV(tunnelwall.cloudflared.firewall_egress#module:module).", returned: always, type: str}
verification: {description: "The probe's result - see RV(tunnelwall.cloudflared.firewall_egress#module:verification).", returned: when verified, type: dict}
origins: {description: "cloudflared's origins - see RV(tunnelwall.cloudflared.firewall_egress#module:origins).", returned: always, type: dict}
transaction: {description: "How the change ran - see RV(tunnelwall.cloudflared.firewall_egress#module:transaction).", returned: always, type: dict}
rolled_back: {description: "See RV(tunnelwall.cloudflared.firewall_egress#module:rolled_back).", returned: failed during the change, type: bool}
added:
  description:
    - Owned rules added (or, in check mode, that would be), one item per rule, in the shape every firewall module
      returns (RV(tunnelwall.cloudflared.firewall_egress#module:added)) - C(purpose) from the comment C(NAME:PURPOSE),
      C(destination) as ufw writes it (V(0.0.0.0/0) or V(::/0) for the DHCP rules, which match the client's source port).
  returned: always
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, family: ipv4, protocol: udp, port: 7844, destination: 198.41.192.7}
removed:
  description: Owned rules removed (or that would be), in the same form as RV(added).
  returned: always
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, family: ipv6, protocol: tcp, port: 7844, destination: "2606:4700:a0::1"}
policy:
  description: ufw's default outgoing policy (V(allow), V(deny) or V(reject)) before and after.
  returned: always
  type: dict
  sample: {before: allow, after: deny}
rule_count:
  description: Number of rules the module owns afterwards, both families.
  returned: always
  type: int
  sample: 42
ufw:
  description: What the module found - whether ufw is enabled and manages IPv6.
  returned: always
  type: dict
  sample: {enabled: true, ipv6: true}
diff:
  description: The owned rules and the outgoing policy before and after, one line each (shown with C(--diff)).
  returned: always
  type: dict
  sample:
    before: "default outgoing policy: allow\n"
    after: "default outgoing policy: deny\nallow out tcp/7844 to 198.41.192.7  # tunnelwall:tunnel\n"
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_module, egress_transaction, ufw_apply
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_spec import (
    EXTRA_ALLOW_SPEC, REQUIRED_IF, RULES_SPEC, TRANSACTION_SPEC)

ARGUMENT_SPEC = dict(
    TRANSACTION_SPEC,
    rules=RULES_SPEC,
    extra_allow=EXTRA_ALLOW_SPEC,
    state=dict(type='str', default='present', choices=['present', 'absent', 'reverted']),
    on_inactive=dict(type='str', default='fail', choices=['fail', 'configure']),
)


def main():
    """Apply the egress policy to ufw in one transaction, or revert the last confirmed change (state=reverted)."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    request, verify, servers = egress_module.prepare(module, 'ufw', 'ufw_egress')
    if os.geteuid() != 0:
        egress_module.fail(module, 'ufw_egress', egress_module.NEEDS_ROOT)
    # PATH first, then /sbin, /usr/sbin and /usr/local/sbin (get_bin_path adds them): the host's own PATH wins.
    binaries = dict((command, module.get_bin_path(command)) for command in ('ufw', 'iptables-restore', 'ip6tables-restore'))
    if not binaries['ufw']:
        egress_module.fail(module, 'ufw_egress', 'ufw is not installed (no ufw command in PATH, /usr/sbin or /sbin)')

    # ufw_apply feeds iptables-restore its input as bytes; a command that cannot start fails the transaction, which
    # then restores, instead of ending the module (egress_module.command_runner).
    backend = ufw_apply.UfwBackend(request, servers, egress_module.command_runner(module, binary_data=True), binaries,
                                   module.params['on_inactive'])
    command = egress_module.command_runner(module)
    try:
        if request.state == 'reverted':
            result = egress_transaction.revert_last(backend, request, module.check_mode, which=module.get_bin_path,
                                                    command=command)
        else:
            result = egress_transaction.run(backend, request, verify, module.check_mode, which=module.get_bin_path,
                                            command=command)
    except egress_transaction.EgressError as error:
        for warning in backend.warnings:
            module.warn(warning)
        egress_module.fail(module, 'ufw_egress', str(error), origins=request.origin_report, **error.details)
    for warning in backend.warnings + [result.get('transaction', {}).get('settled')]:
        if warning:
            module.warn(warning)
    egress_module.succeed(module, 'ufw_egress', origins=request.origin_report, **result)


if __name__ == '__main__':
    main()
