#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This file holds only the documentation: the module is win_firewall_egress.ps1, behind
# the win_firewall_egress action plugin.

DOCUMENTATION = r"""
module: win_firewall_egress
short_description: Allow exactly the egress plan in the Windows firewall, optionally block the rest, verified
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - Keeps one group of outbound allow rules in the Windows firewall, C(NAME cloudflared), one rule per purpose, protocol
    and port of the egress plan with all its remote addresses, and reconciles the whole group in one call - adds what is
    missing, updates what changed, removes what is stale, and touches no rule outside the group.
  - With O(default_deny=true) the default outbound action of O(profiles) becomes C(Block); the action found before is
    kept in the registry and given back with O(state=absent) or O(default_deny=false). Windows can only B(block) (drop) -
    a blocked program waits for its timeout, where the Linux modules reject.
  - The change is one transaction in one task - the action plugin validates the options with the request model the
    Linux modules use (the same message for the same bad request), then the host records the group's rules and the
    default outbound actions (registry, C(HKLM:\SOFTWARE\tunnelwall\egress)), arms the dead-man revert, applies;
    the controller verifies with the probe of M(tunnelwall.cloudflared.win_edge_probe) (O(verify)), then confirms (the
    record and the scheduled task are removed) or restores the record and fails.
  - The dead-man revert is a one-shot scheduled task (C(\tunnelwall\egress revert ID), running as SYSTEM) that
    restores the recorded state after O(confirm_timeout) seconds unless the confirmation removed it first; so a
    cancelled job, a dead controller or a lost WinRM connection between apply and confirmation cannot leave an
    unverified change for longer. A host that was down at that moment restores as soon as it is up.
  - One change per host at a time - the record is the host-wide lock. A run that finds another run's change still
    unconfirmed waits up to O(lock_timeout) seconds; one that finds a change whose deadline passed (its run died)
    restores it first.
  - Windows rewrites addresses (V(198.51.100.7/32) reads back as V(198.51.100.7), a V(/24) as a dotted mask); both
    sides are compared in CIDR form, so a second run changes nothing.
  - The host needs PowerShell 5.1 and the NetSecurity and ScheduledTasks modules that ship with Windows.
# rules, extra_allow, verify and private_networks: what every firewall module takes (the Linux ones too).
extends_documentation_fragment:
  - tunnelwall.cloudflared.egress_rules
options:
  name:
    description:
      - The name the rule group is made from - the group is C(NAME cloudflared), every rule's display name starts with it.
      - ASCII letters, digits, C(-) and C(_), starting with a letter or digit, at most 64 characters; the whole string is
        checked (a trailing newline is refused), which also keeps the wildcards of C(Get-NetFirewallRule -Group) out.
      - The group itself (V(tunnelwall cloudflared)), the option's meaning before, is still accepted, with a warning.
    type: str
    default: tunnelwall
  default_deny:
    description:
      - Block every other new outbound connection in O(profiles); established connections (the WinRM session) stay.
      - "What still gets out: loopback; established connections; the destinations of O(rules) and O(extra_allow); DNS to
        O(dns_servers) (O(allow_dns)); the cloud instance metadata service only with O(allow_metadata); and what the
        enabled outbound rules of other groups allow - among them Windows' own B(Core Networking) rules, which let
        DHCP, DHCPv6, neighbour discovery and multicast listener reports (MLD) out (see O(allow_dhcp), O(allow_mld)).
        Nothing else - not NTP (put your time servers in O(extra_allow))."
      - On a cloud VM, set O(allow_metadata=true) if cloud-init, a guest or SSM agent, or instance credentials are used -
        a default deny cuts the instance metadata service (169.254.169.254) too.
      - Refused, changing nothing, when O(rules) hold no V(tunnel) destination - the same check and message as the
        Linux modules.
    type: bool
    default: false
  profiles:
    description: Firewall profiles the rules and the default action apply to - V(Domain), V(Private), V(Public), in any case.
    type: list
    elements: str
    default: [Domain, Private, Public]
  allow_dns:
    description:
      - With O(default_deny), also allow UDP and TCP 53 to O(dns_servers). Without O(default_deny) no DNS rule is
        written (DNS gets out anyway), as on Linux.
    type: bool
    default: true
  allow_dhcp:
    description:
      - With O(default_deny), DHCP and DHCPv6 client traffic must get out. Windows' built-in rules C(Core Networking -
        Dynamic Host Configuration Protocol (DHCP-Out)) and C(... (DHCPV6-Out)), enabled by default, already allow it
        (bound to the DHCP service and the client ports), so the module writes no rule of its own; V(false) does not
        disable those built-in rules. Kept for the same request on every backend.
    type: bool
    default: true
  allow_mld:
    description:
      - With O(default_deny), IPv6 multicast listener reports must get out. Windows' built-in C(Core Networking -
        Multicast Listener Report (ICMPv6-Out)), C(... Report v2 ...) and C(... Done ...) rules, enabled by default,
        already allow them, so the module writes no rule of its own; V(false) does not disable them.
    type: bool
    default: true
  allow_metadata:
    description:
      - "With O(default_deny), allow TCP 80 to the cloud instance metadata service, C(169.254.169.254) and
        C(fd00:ec2::254) - one rule, C(NAME cloudflared: metadata tcp/80). Off by default (it hands out instance
        credentials). Without O(default_deny) no rule is written."
    type: bool
    default: false
  dns_servers:
    description:
      - The resolvers Windows uses - addresses, without zone ids. Needed with O(default_deny) and O(allow_dns) (the
        controller cannot read the host's resolvers before the change).
    type: list
    elements: str
  confirm_timeout:
    description:
      - Seconds after which the scheduled task restores the state before this run unless the run confirmed its change
        (commit confirmed). Armed before the first change, removed by the confirmation.
      - V(0) turns it off; a run that died then leaves its change until the next run, which restores it first once 300
        seconds have passed. At most 86400.
    type: int
    default: 300
  lock_timeout:
    description:
      - Seconds to wait while another run's change on the host is still unconfirmed. Past it the task fails, naming that
        change, and changes nothing.
    type: int
    default: 120
  origins:
    description:
      - cloudflared's origins to allow under O(default_deny), as rules of purpose C(origin), besides those
        O(cloudflared_config) finds - C(host) a name, an address or a CIDR. Names are resolved on the host, with its
        resolver (C([System.Net.Dns]::GetHostAddresses)), in a read-only module run before the change, every run; a
        name that does not resolve fails the run before anything changes, naming the item.
      - "Checked after the change, in the same task, as on Linux: the host connects to each TCP origin address and
        port (a read-only run of the module, all at once, 3 seconds each); the controller judges from the Winsock
        error. Connected = reachable. WSAECONNREFUSED (a TCP reset) passes - Windows Firewall never answers a connect
        it blocks with a reset, so the reset came from beyond the host: the origin is down. WSAEACCES (10013) is
        Windows Firewall refusing the connect on the host (its rules are Windows Filtering Platform filters of the
        connect) - blocked. No answer, or host or network unreachable, does not say where the connect stopped and
        counts as blocked too: an origin that is down and silent fails the verification (a false red, never a false
        green). A blocked origin fails the verification and restores the previous state, like an unreachable edge;
        also in a run that changed nothing, and also without O(verify). UDP origins and networks (CIDRs) are not
        connected to; their allow rules are in place."
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: A name (resolved on the host), an IPv4/IPv6 address or a CIDR.
        type: str
        required: true
      port:
        description: Destination port.
        type: int
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
  cloudflared_config:
    description:
      - cloudflared's config whose ingress rules name origins to allow under O(default_deny) - V(auto), an absolute
        Windows path (C(C:\...) or C(\\server\share\...)), or V(none).
      - V(auto) reads what cloudflared itself would - the C(--config) in the C(Cloudflared) service's ImagePath
        (C(HKLM:\SYSTEM\CurrentControlSet\Services\Cloudflared)), else cloudflared's own search -
        C(config.yml), C(config.yaml) in C(.cloudflared), C(.cloudflare-warp), C(cloudflare-warp) of the service
        account's profile (its C(%USERPROFILE%); LocalSystem's is C(C:\Windows\System32\config\systemprofile)),
        and, for a service started without arguments, the default config directory (C(%CFDPATH%), else
        C(%ProgramFiles(x86)%\cloudflared)); cloudflared.exe's own directory is not searched (cloudflared does not).
        No C(Cloudflared) service - nothing is read.
      - The module reads the file's text on the host; the action parses it on the controller with the same parser as
        the Linux modules (the same table of ingress services, the same errors naming file and rule, before anything
        changes). A token install (C(--token)/C(--token-file) in the ImagePath) has no local ingress - a warning.
    type: str
    default: auto
  state:
    description: V(absent) removes the group's rules and gives back the default outbound actions.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    description: Reports the exact change and changes nothing (no record, no scheduled task, no verification).
    support: full
  diff_mode:
    description: The group's rules and the default outbound actions before and after.
    support: full
  platform:
    description: Target operating system.
    support: full
    platforms: windows
  action:
    description: An action plugin validates the options, computes the wanted rules, builds the probe's QUIC datagrams
      and drives the transaction on the controller.
    support: full
notes:
  - Not run on Windows in this project's CI, which has no PowerShell runtime; the tests parse the PowerShell and run the
    controller's half for real - validation, the rules, the transaction's calls (apply, probe, confirm or restore) and
    the arguments of each against a recording host. The scheduled task, the registry record and the restore have never
    run. Nor has the origins step on a real host - the registry and profile look-ups, the file read and the name
    resolution; the ImagePath parsing, the search order and the parsing of the text it returns are tested. Nor has the
    connect step of the origins' check; the judgement of its error codes and the restore it leads to are tested.
  - The transaction spans several module runs (apply, probe, confirm or restore) because the QUIC datagrams are built on
    the controller; what protects the host between them is on the host - the record and the scheduled task.
  - The dead-man revert puts back the whole group and the default outbound actions as recorded; it does not check
    whether someone else changed them after this run's apply.
  - Settle, confirm, restore and the scheduled task claim a change first (C(New-Item) without C(-Force) on
    C(HKLM:\SOFTWARE\tunnelwall\egress\claims\ID), which fails when the key exists); whichever comes first acts, so
    a change is never restored twice nor confirmed while its task restores it.
  - Every rule of the group carries the description C(Managed by tunnelwall.cloudflared), the ownership marker; a group
    holding a rule without it is refused before anything changes. Changed O(profiles) update the existing rules.
seealso:
  - module: tunnelwall.cloudflared.win_edge_probe
  - module: tunnelwall.cloudflared.firewalld_egress
  - module: tunnelwall.cloudflared.ufw_egress
"""

EXAMPLES = r"""
- name: Allow exactly the tunnel edge, the API and the update host, block the rest - verified, or restored
  tunnelwall.cloudflared.win_firewall_egress:
    rules: "{{ egress_plan.rules }}"
    default_deny: true
    dns_servers: [10.0.0.53]
    verify:
      plan: "{{ egress_plan }}"
      require: [any_tunnel]
    confirm_timeout: 300

- name: Remove the rules and give back the default outbound action
  tunnelwall.cloudflared.win_firewall_egress:
    state: absent
"""

RETURN = r"""
# Every firewall module returns these too; they are described once, in tunnelwall.cloudflared.firewall_egress:
module: {description: "V(tunnelwall.cloudflared.win_firewall_egress) - see RV(tunnelwall.cloudflared.firewall_egress#module:module).",
         returned: always, type: str}
verification: {description: "The probe's result - see RV(tunnelwall.cloudflared.firewall_egress#module:verification).", returned: when verified, type: dict}
# The keys below are described here for Windows.
added:
  description:
    - What the run allows that was not allowed before (would, in check mode) - one item per destination, in the shape
      every firewall module returns (RV(tunnelwall.cloudflared.firewall_egress#module:added)) - C(destination) a CIDR
      block.
  returned: when the module compared the rules
  type: list
  elements: dict
  sample:
    - {purpose: tunnel, family: ipv4, protocol: udp, port: 7844, destination: 198.41.192.7/32}
removed:
  description: What the run no longer allows, in the same shape as RV(added).
  returned: when the module compared the rules
  type: list
  elements: dict
windows_added:
  description: Display names of the Windows firewall rules added.
  returned: when the module compared the rules
  type: list
  elements: str
  sample: ["tunnelwall cloudflared: tunnel udp/7844"]
windows_removed:
  description: Display names of the Windows firewall rules removed.
  returned: when the module compared the rules
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
previous:
  description:
    - The state the host recorded before the change and restores on failure - the group, its rules (display name,
      protocol, port, addresses, profiles, enabled) and the default outbound action per profile.
  returned: always
  type: dict
  sample: {group: tunnelwall cloudflared, rules: [], outbound: {Domain: Allow, Public: Allow}}
origins:
  description:
    - The origins allowed under O(default_deny), as RV(tunnelwall.cloudflared.firewall_egress#module:origins) describes,
      with C(checked) and, after a verification, C(verification) - one row per address, what the connect found (see
      O(origins)).
  returned: always
  type: dict
  sample: {allowed: [{host: app.corp, addresses: [10.1.2.3/32], port: 8443, protocol: tcp,
                      source: 'C:\cf\config.yml ingress[0] (hostname app.example.com) (https)'}],
           config: {setting: auto, path: 'C:\cf\config.yml', how: the --config of the Cloudflared service (ImagePath)},
           notes: [], warnings: [], checked: true}
transaction:
  description:
    - How the change ran, as RV(tunnelwall.cloudflared.firewall_egress#module:transaction) describes - on Windows with
      C(id) (of the record and the scheduled task) and C(armed) (the dead-man revert) with C(how) V(scheduled_task),
      C(task_path), C(task_name) and C(at).
  returned: always
  type: dict
  sample: {id: 3f2a9c0d1e4b, confirm_timeout: 300, confirmed: true, restored: false, settled: null, waited_for_lock: false,
           armed: {how: scheduled_task, task_path: "\\tunnelwall\\", task_name: egress revert 3f2a9c0d1e4b,
                   at: "2026-11-29T10:05:00.0000000+00:00", confirm_timeout: 300}}
rolled_back:
  description:
    - As RV(tunnelwall.cloudflared.firewall_egress#module:rolled_back) - on Windows, whether the host is back at the
      recorded state after a failed apply or verification - restored by this run (C(transaction.restored)), or already
      by its scheduled task when the verification outlasted O(confirm_timeout). V(false) after a verified change whose
      confirmation was lost - the change stays until the scheduled task restores it.
  returned: failed during the change
  type: bool
"""
