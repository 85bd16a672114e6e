#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nftables_egress
short_description: Allow exactly the Cloudflare Tunnel egress plan with plain nftables, and optionally deny all other outgoing traffic
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - For hosts that run neither firewalld nor ufw - minimal Debian and Ubuntu servers, Arch, Alpine, appliances,
    container hosts - where C(nft) is the firewall. Same options, same meaning and same transaction as
    M(tunnelwall.cloudflared.firewalld_egress) and M(tunnelwall.cloudflared.ufw_egress).
  - Owns one table, C(inet NAME) (see O(name)), and never touches another. In it, one interval set per purpose,
    protocol, port and family (C(tunnel_udp_7844_v4), ...; a widened prefix is stored as a range) and one C(output)
    base chain (priority C(filter), policy accept) with one accept rule per set; O(extra_allow) sets are named
    C(extra_...).
  - With O(default_deny), the chain begins with what the host itself needs - loopback, established and related
    connections, IPv6 neighbour discovery, then DHCP, MLD, DNS and the metadata service as the options say - and ends
    with a reject (a TCP reset for TCP, ICMP administratively prohibited for everything else).
  - On a host without any firewall, connection tracking starts with this table, so TCP connections already open -
    the Ansible session among them - are picked up mid-stream and look new. Packets without SYN are let out for
    them (a packet without SYN opens no connection), so they live on while every new connection is refused.
  - The whole table is replaced in one C(nft -f) transaction (checked first with C(nft -c)), so there is never a
    moment with half a table. What is compared is what nft lists - the live table (C(nft -j list table)) against the
    new one loaded into an empty network namespace of its own (C(unshare --net)) - so a second run changes nothing
    and check mode reports exactly the change a real run makes.
  - Persistence without taking over the host's C(/etc/nftables.conf) - the table is written to
    C(/etc/nftables.d/NAME-egress.nft), and where C(/etc/systemd/system) exists, a oneshot unit of its own,
    C(tunnelwall-nftables-NAME.service), loads it at boot before C(network-pre.target) and after C(nftables.service)
    (whose ruleset usually begins with C(flush ruleset)); a drop-in C(sysinit.target.d/tunnelwall-nftables-NAME.conf)
    pulls the unit in. O(state=absent) removes the table, the file, the unit and the drop-in.
attributes:
  check_mode:
    description: Computes the exact change (the table as nft would list it, the files) and writes nothing.
    support: full
  diff_mode:
    description: The table as nft lists it, before and after.
    support: full
extends_documentation_fragment:
  - tunnelwall.cloudflared.egress_rules
  - tunnelwall.cloudflared.egress_rules.transaction
options:
  state:
    description:
      - V(present) makes table C(inet NAME) and its files exactly what is asked for.
      - V(absent) removes the table, its ruleset file, unit and drop-in.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Needs root, nft 0.9.3 or later and C(unshare) (util-linux, part of every systemd distribution). Tested with
    nftables 1.0.6 on Debian 12.
  - O(name) is also an nft identifier here - it starts with a letter and is not a keyword of nft's language (C(ip),
    C(set), C(table), ...); nft's refusal is reported and nothing is changed.
  - How it coexists with other tables - nftables runs every base chain of a hook, whatever table it is in; an accept
    ends only its own chain. So another table's drop still drops what this module allows (Docker's and libvirt's
    tables filter forwarded traffic, not the host's own output, and are not affected - nor does O(default_deny)
    restrict what containers send), and this module's reject applies to anything another table accepts. A ruleset that begins with C(flush ruleset) (the usual
    C(/etc/nftables.conf)) removes this table when it is loaded again by hand; run the module again, or include
    C(/etc/nftables.d/*.nft) at its end, as Alpine's does.
  - Without systemd (Alpine, OpenRC) no unit is written; Alpine's C(nftables) service loads C(/etc/nftables.d/*.nft)
    by itself. Elsewhere load the ruleset file from your own boot script.
  - A restore (verification failed, or the dead-man revert) puts back the previous files and loads the previous
    ruleset file - or deletes the table when there was none. A live table that differed from its file before the run
    comes back as the file said.
  - The table carries the comment C(tunnelwall.cloudflared.nftables_egress NAME). A live table C(inet NAME) without it
    (Debian's own C(inet filter) for O(name=filter)) is refused before anything changes.
  - The unit follows C(nftables.service) (C(PartOf=), C(ReloadPropagatedFrom=), C(ExecReload=)), so a
    C(systemctl reload) or C(restart nftables), which flushes the ruleset, loads the table again.
seealso:
  - module: tunnelwall.cloudflared.firewalld_egress
  - module: tunnelwall.cloudflared.ufw_egress
  - plugin: tunnelwall.cloudflared.edge_endpoints
    plugin_type: lookup
  - name: nftables wiki - Configuring chains
    description: Base chains, hooks and priorities; why an accept does not end the hook.
    link: https://wiki.nftables.org/wiki-nftables/index.php/Configuring_chains
"""

EXAMPLES = r"""
- name: Resolve the egress plan once
  ansible.builtin.set_fact:
    egress_plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
  run_once: true

- name: Allow exactly what cloudflared needs, deny all other outgoing traffic, and prove the tunnel still works
  tunnelwall.cloudflared.nftables_egress:
    rules: "{{ egress_plan.rules }}"
    default_deny: true
    verify:
      plan: "{{ egress_plan }}"
      require: [any_tunnel]
  become: true

- name: Remove the table, its file and its unit
  tunnelwall.cloudflared.nftables_egress:
    state: absent
  become: true
"""

RETURN = r"""
# Every firewall module returns these too; they are described once, in tunnelwall.cloudflared.firewall_egress:
module: {description: "V(tunnelwall.cloudflared.nftables_egress) - see RV(tunnelwall.cloudflared.firewall_egress#module:module).", returned: always, type: str}
verification: {description: "The probe's result - see RV(tunnelwall.cloudflared.firewall_egress#module:verification).", returned: when verified, type: dict}
origins: {description: "cloudflared's origins - see RV(tunnelwall.cloudflared.firewall_egress#module:origins).", returned: always, type: dict}
transaction: {description: "How the change ran - see RV(tunnelwall.cloudflared.firewall_egress#module:transaction).", returned: always, type: dict}
rolled_back: {description: "See RV(tunnelwall.cloudflared.firewall_egress#module:rolled_back).", returned: failed during the change, type: bool}
table:
  description: The table the module owns.
  returned: always
  type: str
  sample: inet tunnelwall
sets:
  description: The names of the table's sets (none with O(state=absent)).
  returned: always
  type: list
  elements: str
  sample: [dns_udp_53_v4, tunnel_tcp_7844_v4, tunnel_udp_7844_v4]
added:
  description:
    - The destinations the table's sets allow after the run and did not before (or, in check mode, would), one item
      per destination, in the shape every firewall module returns (RV(tunnelwall.cloudflared.firewall_egress#module:added))
      - C(destination) an address, a CIDR block or a C(first-last) range, as nft stores it.
  returned: always
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, family: ipv4, protocol: udp, port: 7844, destination: 198.41.192.7}
removed:
  description: The destinations the sets no longer allow, in the same form as RV(added).
  returned: always
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, family: ipv6, protocol: tcp, port: 7844, destination: "2606:4700:a0::1"}
rule_count:
  description: The number of rules of the output chain afterwards.
  returned: always
  type: int
  sample: 12
files:
  description: The files written or removed (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [/etc/nftables.d/tunnelwall-egress.nft]
commands:
  description: The commands that changed the host (in check mode, that would), C(write)/C(remove) for files.
  returned: always
  type: list
  elements: list
  sample: [[/usr/sbin/nft, -c, -f, "-"], [write, /etc/nftables.d/tunnelwall-egress.nft], [/usr/sbin/nft, -f, /etc/nftables.d/tunnelwall-egress.nft]]
nameservers:
  description: The resolvers DNS is allowed to (under O(default_deny) with O(allow_dns)).
  returned: always
  type: list
  elements: str
  sample: [198.51.100.253]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_module, egress_transaction, nftables_apply
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_spec import (
    EXTRA_ALLOW_SPEC, REQUIRED_IF, RULES_SPEC, TRANSACTION_SPEC)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import nftables_rules

ARGUMENT_SPEC = dict(
    TRANSACTION_SPEC,
    rules=RULES_SPEC,
    extra_allow=EXTRA_ALLOW_SPEC,
    state=dict(type='str', default='present', choices=['present', 'absent']),
)


def main():
    """Apply the egress policy as an nftables table in one transaction (egress_transaction) and report the change."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    request, verify, nameservers = egress_module.prepare(module, 'nftables', 'nftables_egress', nftables_rules.render_problem)
    if os.geteuid() != 0:
        egress_module.fail(module, 'nftables_egress', egress_module.NEEDS_ROOT)
    # The host's PATH first, then the sbin directories get_bin_path adds.
    binaries = dict((command, module.get_bin_path(command)) for command in ('nft', 'unshare', 'systemctl'))
    if not binaries['nft']:
        egress_module.fail(module, 'nftables_egress', 'nft is not installed (no nft command in PATH, /usr/sbin or /sbin)')
    run = egress_module.command_runner(module)
    backend = nftables_apply.NftablesBackend(request, nameservers, run, binaries,
                                             systemd_running=egress_transaction.systemd_running(module.get_bin_path))
    try:
        outcome = egress_transaction.run(backend, request, verify, module.check_mode, which=module.get_bin_path,
                                         command=run)
    except egress_transaction.EgressError as error:
        egress_module.fail(module, 'nftables_egress', str(error), table=nftables_rules.table(request.name),
                           commands=backend.commands, nameservers=nameservers, origins=request.origin_report,
                           **error.details)
    if outcome['transaction'].get('settled'):
        module.warn(outcome['transaction']['settled'])
    result = nftables_apply.result(backend, outcome['changed'], module.check_mode, module._diff)
    egress_module.succeed(module, 'nftables_egress', nameservers=nameservers, verification=outcome['verification'],
                          transaction=outcome['transaction'], origins=request.origin_report, **result)


if __name__ == '__main__':
    main()
