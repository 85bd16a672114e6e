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

    # The transaction every Linux firewall module runs (egress_request, egress_transaction): one meaning per option.
    TRANSACTION = r"""
options:
  name:
    description:
      - Tag or prefix of every object the module owns; runs with different names own different objects.
      - ASCII letters, digits, C(-) and C(_), starting with a letter or digit; the whole string is checked, so a trailing newline is
        refused. At most 11 characters for firewalld, 64 for ufw.
    type: str
    default: tunnelwall
  default_deny:
    description:
      - Refuse every other new outgoing connection with a B(reject) (TCP reset or ICMP unreachable), so a blocked
        program fails at once instead of waiting for its timeout.
      - What still gets out is loopback, established and related connections (the Ansible session itself), the allowed
        destinations, O(extra_allow), DNS to the resolvers (see O(allow_dns)) and IPv6 neighbour discovery.
      - Refused, changing nothing, when O(rules) hold no V(tunnel) destination - the host could no longer reach the
        tunnel edge. The same with every backend.
    type: bool
    default: false
  allow_dns:
    description:
      - With O(default_deny=true), allow UDP and TCP 53 to the host's resolvers - O(dns_servers), or else the
        C(nameserver) lines of O(resolv_conf); a loopback stub brings in the upstream servers of systemd-resolved
        (C(/run/systemd/resolve/resolv.conf)). Without O(default_deny) no DNS rule is written (DNS gets out anyway).
    type: bool
    default: true
  dns_servers:
    description: The resolvers O(allow_dns) allows instead of those of O(resolv_conf) - addresses, without zone ids.
    type: list
    elements: str
  resolv_conf:
    description: Where O(allow_dns) reads the host's resolvers.
    type: path
    default: /etc/resolv.conf
  verify:
    description:
      - Probe the tunnel edge from the host after applying, in the same module run (the probe code of
        M(tunnelwall.cloudflared.edge_probe)), before the change is committed. When O(verify.require) is not met the
        previous state is restored at once and the module fails, saying what was unreachable and what was restored.
      - Without it there is no verification; the change is committed as soon as it is applied.
      - Skipped in check mode.
    type: dict
    suboptions:
      plan:
        description: The egress plan to probe (the P(tunnelwall.cloudflared.edge_endpoints#lookup) lookup's result).
        type: dict
        required: true
      require:
        description: What must work - see the C(require) option of M(tunnelwall.cloudflared.edge_probe).
        type: list
        elements: str
        choices: [any_tunnel, quic, http2, api, update, dns]
        default: [any_tunnel]
      timeout:
        description: Seconds each probe waits.
        type: float
        default: 5.0
      ca_path:
        description: CA bundle for the TLS checks instead of the system store.
        type: path
      validate_certs:
        description: Check the edge's certificates.
        type: bool
        default: true
  confirm_timeout:
    description:
      - The dead-man revert, in seconds after which the host restores the state before this run by itself unless the run
        confirmed its change (commit confirmed). Armed before the first change, cancelled by the confirmation.
      - It is a transient systemd timer (C(systemd-run --on-active)) where systemd is PID 1, else a detached process in
        its own session; either survives the module, the SSH session and the controller. It waits for the host-wide
        lock, so it never restores in the middle of a running transaction, and it restores nothing when the firewall's
        files changed since the change (someone else's later change wins).
      - V(0) turns it off. A run that finds a change a dead run left unconfirmed restores it first, whatever this is.
    type: int
    default: 300
  lock_timeout:
    description:
      - Seconds to wait for the host-wide lock that one egress transaction holds from its first read to its
        confirmation or restore. Past it the module fails, naming the holder, and changes nothing.
    type: int
    default: 120
notes:
  - The change is one transaction on the host - read, record the previous content of every file it may touch (fsynced)
    in a pending record next to the firewall's configuration, arm the dead-man revert, apply, verify, commit, confirm
    (remove the record, cancel the revert) - or restore with the same code the dead-man revert runs. A SIGKILL of the
    module, of C(ansible-playbook) or a cut SSH connection at any point leaves the host, within O(confirm_timeout) and
    a few seconds, with the state before the run.
"""
