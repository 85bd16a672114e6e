# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # What every firewall module takes, Linux and Windows alike: the plan's rules, extra destinations, the
    # verification and the private networks routed to the tunnel.
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
  verify:
    description:
      - Probe the tunnel edge from the host after applying, in the same task, before the change is committed - with the
        probe code of M(tunnelwall.cloudflared.edge_probe) inside the module run on Linux, with the probe of
        M(tunnelwall.cloudflared.win_edge_probe) on Windows. When O(verify.require) is not met the previous state is
        restored at once and the task fails, saying what was unreachable and what was restored.
      - Without it there is no verification; the change is committed as soon as it is applied.
      - Skipped in check mode.
    type: dict
    suboptions:
      plan:
        description: The egress plan to probe (the P(tunnelwall.cloudflared.edge_endpoints#lookup) lookup's result).
        type: dict
        required: true
      require:
        description:
          - What must work - see the C(require) option of M(tunnelwall.cloudflared.edge_probe) (and of
            M(tunnelwall.cloudflared.win_edge_probe)); V(origins) - the check of O(origins) after the change, done by
            the firewall module itself, on Linux and on Windows - may be listed to say so.
        type: list
        elements: str
        choices: [any_tunnel, quic, http2, api, update, dns, origins]
        default: [any_tunnel]
      timeout:
        description: Seconds each probe waits - the same default as M(tunnelwall.cloudflared.edge_probe)'s O(tunnelwall.cloudflared.edge_probe#module:timeout).
        type: float
        default: 3.0
      origins:
        description:
          - More destinations that must stay reachable - checked after the change like the allowed origins (see
            O(origins)), but not allowed by this module (for example a service reached through O(extra_allow) or
            another firewall's rule). Refused or unanswered after the change while the SYN never left the host (see
            O(origins)) fails the verification and restores.
          - On Windows too - judged from the connect's Winsock error (see the O(tunnelwall.cloudflared.win_firewall_egress#module:origins)
            option of M(tunnelwall.cloudflared.win_firewall_egress)).
        type: list
        elements: dict
        suboptions:
          host:
            description: A name (resolved on the host), an IPv4 or an IPv6 address.
            type: str
            required: true
          port:
            description: TCP port.
            type: int
            required: true
      ca_path:
        description:
          - CA bundle on the managed host for the TLS checks instead of the system store (and of the three Cloudflare
            roots added on 7844), like C(cloudflared)'s C(--cacert). On Windows it is passed to the host as given (not
            expanded on the controller).
        type: path
      validate_certs:
        description: Check the edge's certificates.
        type: bool
        default: true
  private_networks:
    description:
      - Private networks routed to the tunnel (cloudflared's C(warp-routing)), allowed as purpose C(origin) under
        O(default_deny), one rule per port. When cloudflared's config has a C(warp-routing) section and this is empty,
        the result's C(origins.warnings) say that private-network traffic will be blocked (on Linux a task warning too).
    type: list
    elements: dict
    default: []
    suboptions:
      network:
        description: A CIDR without host bits (V(10.8.0.0/16)).
        type: str
        required: true
      ports:
        description: The ports to allow (every port of a network is not expressible).
        type: list
        elements: int
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
"""

    # The transaction every Linux firewall module runs (egress_request, egress_transaction): one meaning per option.
    TRANSACTION = r"""
attributes:
  platform:
    description: Target operating system.
    support: full
    platforms: posix
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
      - "What still gets out: loopback; established and related connections (the Ansible session itself); the
        destinations of O(rules) and O(extra_allow); DNS to the resolvers (O(allow_dns)); the DHCP client's renewals
        (O(allow_dhcp)); IPv6 neighbour discovery (neighbour solicitation and advertisement, router solicitation - always);
        IPv6 multicast listener reports (O(allow_mld)); the cloud instance metadata service only with O(allow_metadata).
        Nothing else - not NTP (put your time servers in O(extra_allow)), not package mirrors, not a proxy."
      - On a cloud VM, set O(allow_metadata=true) if cloud-init, an SSM or guest agent, or instance credentials are
        used - default deny cuts the instance metadata service (169.254.169.254) too.
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
  allow_dhcp:
    description:
      - With O(default_deny=true), let the host's DHCP client renew its lease - UDP from port 68 to port 67 (DHCPv4) and
        from port 546 to port 547 (DHCPv6), to any destination, broadcast 255.255.255.255 and ff02::1:2 included. Any
        destination because a renewal is unicast to the server that gave the lease, which the module cannot know. The
        client's source port is part of the rule where the firewall can say it (firewalld, ufw, nftables), so only a program
        bound to the client port (root) gets through.
      - Without it a host whose address comes from DHCP loses it when the lease runs out. Without O(default_deny)
        no rule is written.
    type: bool
    default: true
  allow_mld:
    description:
      - With O(default_deny=true), let IPv6 multicast listener messages out - ICMPv6 types 131, 132 and 143 (MLDv1
        report and done, MLDv2 report), which connection tracking does not follow. Switches that snoop MLD stop
        forwarding IPv6 multicast to a host that never reports, and neighbour discovery with it.
      - ufw's own C(before6.rules) already let these out from link-local addresses whatever this option says (ufw
        user rules cannot name ICMPv6 types); firewalld gets one rich rule per type. Without O(default_deny) no rule
        is written.
    type: bool
    default: true
  allow_metadata:
    description:
      - With O(default_deny=true), allow TCP 80 to the cloud instance metadata service, C(169.254.169.254) and AWS's
        IPv6 endpoint C(fd00:ec2::254) - what cloud-init, SSM and guest agents and instance credential refresh use.
      - Off by default - it hands out instance credentials, so it is allowed only when asked. Other providers'
        endpoints (Azure's C(168.63.129.16) wire server, for one) go in O(extra_allow). Without O(default_deny) no
        rule is written.
    type: bool
    default: false
  dns_servers:
    description: The resolvers O(allow_dns) allows instead of those of O(resolv_conf) - addresses, without zone ids.
    type: list
    elements: str
  resolv_conf:
    description: Where O(allow_dns) reads the host's resolvers.
    type: path
    default: /etc/resolv.conf
  origins:
    description:
      - "Origins of cloudflared - the services its ingress rules proxy to - to allow under O(default_deny), besides
        those O(cloudflared_config) finds: C(host) is a name (resolved on the host, with its resolver, in this module
        run, every run), an IPv4 or IPv6 address or a CIDR."
      - Rendered as rules of purpose C(origin) by every backend. Loopback destinations need nothing (loopback always
        gets out). A name that does not resolve fails the run before anything changes.
      - "Checked after the change, in the same run (the verification): a TCP connect from the host to each TCP origin
        address and port. Connected = reachable. Refused (a TCP reset) or no answer passes only when it is provably
        not this host's firewall: connection tracking saw the SYN leave the host (its C(NEW) event, read over
        netlink while the connects run) - the origin is down or something beyond the host stops it. A SYN that never
        left (a reject rule's TCP reset made on the host, a drop, an earlier deny of another table that still stops
        an origin the new rules allow) fails the verification and restores the previous state, like an unreachable
        edge - whatever it was before the change, and also in a run that changed nothing. When connection tracking
        cannot be read (no CAP_NET_ADMIN, or it does not track in the host's network namespace - every backend's
        default deny makes it track), nothing proves the refusal is not the firewall's: blocked. UDP origins and
        networks (CIDRs) are not connected to - a datagram proves nothing without an answer; their allow rules are in
        place. Always on under O(default_deny) (O(verify.require) may name V(origins) to say so)."
      - Ignored without O(default_deny) (everything gets out anyway).
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: A name, an IPv4/IPv6 address or a CIDR (V(10.1.2.0/24)); no URL, no port.
        type: str
        required: true
      port:
        description: Destination port, 1 to 65535.
        type: int
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
  cloudflared_config:
    description:
      - "cloudflared's config file, whose ingress rules name its origins - V(auto) reads the one cloudflared itself
        would: the C(--config) of the C(cloudflared.service) unit (C(/etc/systemd/system), C(/run/systemd/system),
        C(/usr/lib/systemd/system), C(/lib/systemd/system)), else the first C(config.yml) or C(config.yaml) in
        C(~/.cloudflared), C(~/.cloudflare-warp), C(~/cloudflare-warp) (home of the unit's C(User) and of root),
        C(/etc/cloudflared), C(/usr/local/etc/cloudflared) - cloudflared's own order. A path reads that file; V(none)
        reads nothing."
      - "What each ingress C(service) allows (TCP): C(http://) 80, C(https://) 443, C(ws://) 80, C(wss://) 443,
        C(ssh://) 22, C(rdp://) 3389, C(smb://) 445, C(tcp://) 7864 when the URL gives no port; C(socks-proxy) the
        prefixes and ports of its allowing C(ipRules); nothing for C(http_status:), C(hello_world), C(unix:),
        C(unix+tls:) and loopback; nothing for C(bastion), C(bastionMode) or C(proxyType: socks) (the client picks the
        destination - under a default deny it reaches only what is allowed); C(originRequest.access) with C(required)
        adds C(TEAM.cloudflareaccess.com) (C(TEAM.fed.cloudflareaccess.com) for C(environment: fed)) on 443."
      - A file that cannot be read or parsed, or a rule cloudflared would refuse (a path in the service, no scheme or
        host, a scheme without default port and no port, a C(socks-proxy) rule allowing every port), fails the run
        before anything changes, naming the file and the rule. A tunnel run with C(--token) keeps its ingress in the
        dashboard - the result says so; list its origins in O(origins).
      - The YAML is read with PyYAML where the host has it, else with a reader of the subset cloudflared configs use
        (block mappings and lists, plain and quoted scalars, flow lists); anchors, aliases, tags and multi-line
        scalars are refused with the line, never read as less.
      - Read only under O(default_deny).
    type: str
    default: auto
  confirm_timeout:
    description:
      - The dead-man revert, in seconds after which the host restores the state before this run by itself unless the run
        confirmed its change (commit confirmed). Armed before the first change, cancelled by the confirmation.
      - It is a transient systemd timer (C(systemd-run --on-active)) where systemd is PID 1 (a host with systemd but
        without C(systemd-run) is refused), else a detached process in its own session; either survives the module,
        the SSH session and the controller. It waits for the host-wide lock (at most 300 s), so it never restores in
        the middle of a running transaction. Where C(/etc/systemd/system) exists a boot check
        (C(tunnelwall-boot-revert.service)) restores at boot what a reboot left unconfirmed, before the firewall loads
        its files.
      - A restore takes back what the run changed and keeps what other programs changed since (ufw's shared files are
        merged line by line; the module's own files are put back whole). A restore whose reload failed keeps its
        record; the dead-man, the boot check and the next run try again.
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
    a few seconds, with the state before the run; a reboot before the confirmation, at boot.
  - The pending record is trusted only if it is root's (a regular file, no symlink, not writable by group or others,
    in a directory that is the same); the files a restore writes and the commands it runs are rebuilt from the
    backend, never read from the record.
  - Every object the module creates carries an ownership marker (nftables - the table's comment; firewalld - its
    description; ufw - the rule tag and the state file's C(module) key). An object of the module's name without it
    belongs to someone else, and the run is refused before anything changes.
"""
