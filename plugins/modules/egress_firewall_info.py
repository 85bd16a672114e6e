#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: egress_firewall_info
short_description: Find which firewall manages a host's egress, and what it allows now (drift)
version_added: 0.1.0
description:
  - Reports whether firewalld is installed and running (asked over D-Bus, as M(tunnelwall.cloudflared.firewalld_egress)
    talks to it), whether ufw is installed and enabled, whether C(nft) is installed and usable (C(nft list tables)
    works, which needs root), and which of them the P(tunnelwall.cloudflared.egress_firewall#role) role would use
    with C(egress_firewall_backend=auto).
  - Changes nothing. On a Windows host (reached with PowerShell) its action plugin answers instead, with the same
    keys - RV(backend) V(windows), RV(applied) read from the rule group of M(tunnelwall.cloudflared.win_firewall_egress)
    (one read-only run of that module), RV(origins) read and resolved on the host the way that module does it, and
    RV(drift); RV(firewalld), RV(ufw) and RV(nftables) are V(null) there.
  - Also reads back what the chosen firewall allows now for the rules named O(name) (RV(applied)), so that the
    C(tunnelwall.cloudflared.check) playbook can compare it with a fresh plan (drift).
author: tunnelwall developers (@tunnelwall)
extends_documentation_fragment:
  - tunnelwall.cloudflared.attributes_read_only
options:
  name:
    description:
      - The name the rules were applied with (the role's C(egress_firewall_name)), whose allow-list RV(applied) reads.
    type: str
    default: tunnelwall
  backend:
    description:
      - Which firewall to read RV(applied) from - the role's C(egress_firewall_backend); V(auto) reads the one
        RV(backend) names. V(windows) only on Windows hosts (where V(auto) means it too).
    type: str
    choices: [auto, firewalld, ufw, nftables, windows]
    default: auto
  plan:
    description:
      - An egress plan (the P(tunnelwall.cloudflared.edge_endpoints#lookup) lookup's, fresh) to compare RV(applied)
        with; the module then returns RV(drift).
    type: dict
  origins:
    description:
      - cloudflared's origins as the firewall modules take them (their O(tunnelwall.cloudflared.ufw_egress#module:origins)
        option) - C(host) a name, an address or a CIDR, C(port), C(protocol) (V(tcp) by default).
      - With O(origins), O(private_networks) or O(cloudflared_config) other than V(none), the module resolves
        cloudflared's origins afresh, here on the host, as a firewall module would under a default deny (the config
        found the same way, names resolved with this host's resolver), returns them in RV(origins) and compares them
        with what the firewall allows for purpose V(origin) in RV(drift).
      - Give these only for hosts under a default deny - without one the firewall modules allow no origins, and every
        origin would count as new.
    type: list
    elements: dict
  private_networks:
    description:
      - warp-routing's private networks as the firewall modules take them - C(network) (a CIDR), C(ports),
        C(protocol). See O(origins).
    type: list
    elements: dict
  cloudflared_config:
    description:
      - cloudflared's config whose ingress rules name origins - V(auto) (found where cloudflared looks, as the firewall
        modules find it; on Windows as M(tunnelwall.cloudflared.win_firewall_egress) finds it), a path, or V(none) (the
        default here - origins are compared only when asked for). See O(origins).
    type: str
    default: none
attributes:
  platform:
    description: Target operating system.
    support: full
    platforms: posix, windows
  action:
    description: On Windows hosts an action plugin reads the Windows firewall through win_firewall_egress' read-only steps.
    support: full
notes:
  - The choice, in order - a running firewalld, because it owns the ruleset while it runs; an enabled ufw; nftables
    where C(nft) is usable (M(tunnelwall.cloudflared.nftables_egress), for hosts with neither); an installed but
    inactive ufw, so that M(tunnelwall.cloudflared.ufw_egress) can say it is inactive; else none.
seealso:
  - module: tunnelwall.cloudflared.firewalld_egress
  - module: tunnelwall.cloudflared.ufw_egress
  - module: tunnelwall.cloudflared.nftables_egress
"""

EXAMPLES = r"""
- name: Which firewall would the role use?
  tunnelwall.cloudflared.egress_firewall_info:
  register: found

- name: Say it
  ansible.builtin.debug:
    msg: "{{ found.backend | default('none', true) }}: {{ found.description }}"

- name: Has the edge moved since the rules were applied?
  tunnelwall.cloudflared.egress_firewall_info:
    name: tunnelwall
    plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
  register: now

- name: Say what drifted
  ansible.builtin.debug:
    msg: "{{ now.drift.text }} ({{ now.drift.purposes | join(', ') }}): run tunnelwall.cloudflared.site"
  when: now.drift and (now.drift.new or now.drift.gone)

- name: The edge and cloudflared's origins (its config, resolved here) against what a default deny allows
  tunnelwall.cloudflared.egress_firewall_info:
    plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
    cloudflared_config: auto
    origins:
      - {host: db.internal, port: 5432}
  register: now
"""

RETURN = r"""
backend:
  description: V(firewalld), V(ufw), V(nftables), V(windows) (on Windows hosts), or null when none is usable.
  returned: always
  type: str
  sample: firewalld
description:
  description: What was found, in one line.
  returned: always
  type: str
  sample: "firewalld installed but not running (state FAILED); ufw not installed; nftables 1.0.6 usable"
firewalld:
  description: What was found of firewalld.
  returned: always
  type: dict
  sample: {installed: true, running: true, version: 1.3.3, detail: RUNNING}
ufw:
  description: What was found of ufw.
  returned: always
  type: dict
  sample: {installed: true, enabled: false}
nftables:
  description:
    - What was found of nftables. C(usable) means C(nft list tables) ran without error (as the module's user);
      C(detail) says why not when it did not.
  returned: always
  type: dict
  sample: {installed: true, usable: true, version: 1.0.6, detail: usable}
applied:
  description:
    - The destinations the chosen firewall allows now for O(name), by purpose (addresses or blocks as the firewall
      stores them) - ufw's rules tagged C(NAME:PURPOSE), firewalld's permanent ipsets, the sets of nftables' table
      C(inet NAME). Empty when nothing of O(name) is there; V(null) when there is no firewall or it could not be read
      (RV(applied_error) says why).
  returned: always
  type: dict
  sample: {tunnel: [198.51.100.11/32, 2001:db8:e::11/128], api: [198.51.100.80/32]}
applied_error:
  description: Why RV(applied) could not be read; V(null) when it was.
  returned: always
  type: str
drift:
  description:
    - With O(plan), how RV(applied) differs from it, for the purposes V(tunnel), V(api) and V(update) the firewall
      holds - C(new) blocks of the plan the firewall does not allow (the edge moved there), C(gone) allowed blocks the
      plan no longer has, C(purposes) affected, and C(text) like V(+2/−1). V(null) without O(plan) or when nothing is
      applied.
      - With O(origins), O(private_networks) or O(cloudflared_config), purpose V(origin) too - the origins resolved
        afresh (RV(origins)) against what the firewall allows for them; an origin name that now resolves elsewhere
        counts as new and gone. Compared by address blocks, not ports.
  returned: always
  type: dict
  sample: {new: 2, gone: 1, purposes: [tunnel, origin], text: "+2/−1"}
origins:
  description:
    - With O(origins), O(private_networks) or O(cloudflared_config), cloudflared's origins as a firewall module would
      allow them now under a default deny - C(rules) (the egress plan's rule shape, purpose V(origin)), C(allowed)
      (host, resolved addresses, port, protocol, source), C(config) (which file, found how) and C(notes); V(null)
      otherwise. C(error) says why they could not be resolved (a config that cannot be understood, a name that does
      not resolve) - then they are not compared.
  returned: always
  type: dict
  sample:
    rules: [{purpose: origin, protocol: tcp, port: 443, ipv4: [10.1.2.3/32], ipv6: []}]
    allowed: [{host: app.internal, addresses: [10.1.2.3/32], port: 443, protocol: tcp,
               source: "/etc/cloudflared/config.yml ingress[0] (hostname app.example.com) (https)"}]
    config: {path: /etc/cloudflared/config.yml, how: "cloudflared's default search", setting: auto}
    notes: []
    error: null
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    backend_choice, egress_applied, egress_module, egress_revert, egress_transaction, origins, ufw_rules)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.firewalld_client import Firewalld

SBIN = ['/usr/sbin', '/sbin']


def fresh_origins(params, read=egress_module.read_text, exists=os.path.exists, homes=egress_module.home_of, getaddrinfo=None):
    """cloudflared's origins resolved now, as a firewall module would under a default deny, or None when not asked.

    -> {rules, allowed, config, notes, error}; a config or a name that cannot be used gives ``error`` and no rules
    (the same reading and resolution as the firewall modules: origins.read_config and origins.collect).
    """
    if params['origins'] is None and params['private_networks'] is None and params['cloudflared_config'] == 'none':
        return None
    try:
        setting = origins.check_config_setting(params['cloudflared_config'])
        wanted = list(origins.check_origins(params['origins'])) + list(origins.check_private_networks(params['private_networks']))
        config, from_config, notes = origins.read_config(setting, read, exists, homes)
        rules, allowed = origins.collect(wanted + from_config, **({'getaddrinfo': getaddrinfo} if getaddrinfo else {}))
    except origins.OriginError as error:
        return {'rules': None, 'allowed': None, 'config': None, 'notes': [], 'error': str(error)}
    return {'rules': rules, 'allowed': allowed, 'config': config, 'notes': notes, 'error': None}


def first_line(text):
    """The first non-blank line of ``text`` (say, a version banner), '' for none."""
    lines = (text or '').strip().splitlines()
    return lines[0] if lines else ''


def find_nftables(module):
    """{installed, usable, version, detail}: usable when `nft list tables` works, which is what nftables_egress needs."""
    nft = module.get_bin_path('nft', opt_dirs=SBIN)
    if not nft:
        return {'installed': False, 'usable': False, 'version': None, 'detail': 'not installed'}
    rc, out, err = module.run_command([nft, '--version'])
    match = re.search(r'\bv(\d[\w.]*)', out or '') if rc == 0 else None
    version = match.group(1) if match else None
    rc, out, err = module.run_command([nft, 'list', 'tables'])
    if rc != 0:
        return {'installed': True, 'usable': False, 'version': version,
                'detail': first_line(err) or first_line(out) or 'nft list tables: exit %d' % rc}
    return {'installed': True, 'usable': True, 'version': version, 'detail': 'usable'}


UFW_RULES = dict((family, '/' + path) for family, path in egress_revert.UFW_RULES.items())


def read_applied(module, backend, name):
    """(what the backend allows for NAME by purpose, None) or (None, why it could not be read)."""
    if backend == 'ufw':
        return egress_applied.from_ufw(dict((f, egress_module.read_text(p)) for f, p in UFW_RULES.items()), name), None
    if backend == 'firewalld':
        try:
            return egress_applied.from_firewalld(Firewalld(module.run_command).read(name, permanent=True)['ipsets'], name), None
        except egress_transaction.EgressError as error:
            return None, str(error)
    if backend == 'nftables':
        nft = module.get_bin_path('nft', opt_dirs=SBIN)
        rc, out, err = module.run_command([nft, 'list', 'tables'])
        if rc == 0 and ('table inet %s' % name) not in out.splitlines():
            return {}, None
        rc, out, err = module.run_command([nft, '-j', 'list', 'table', 'inet', name])
        if rc != 0:
            return None, first_line(err) or 'nft -j list table inet %s: exit %d' % (name, rc)
        try:
            return egress_applied.from_nftables(out), None
        except (ValueError, KeyError, TypeError) as error:
            return None, 'cannot read nft -j list table inet %s: %s' % (name, error)
    if backend == 'windows':
        return None, 'backend windows: this host is not reached with PowerShell; the Windows firewall is read on Windows hosts'
    return None, 'no firewall found'


def main():
    """Report what each firewall backend's state is, the one chosen, what it allows now and its drift from ``plan``."""
    module = AnsibleModule(argument_spec={'name': {'type': 'str', 'default': 'tunnelwall'},
                                          'backend': {'type': 'str', 'default': 'auto',
                                                      'choices': ['auto', 'firewalld', 'ufw', 'nftables', 'windows']},
                                          'plan': {'type': 'dict'},
                                          'origins': {'type': 'list', 'elements': 'dict'},
                                          'private_networks': {'type': 'list', 'elements': 'dict'},
                                          'cloudflared_config': {'type': 'str', 'default': 'none'}},
                           supports_check_mode=True)
    firewalld = {'installed': bool(module.get_bin_path('firewalld', opt_dirs=SBIN) or module.get_bin_path('firewall-cmd')),
                 'running': False, 'version': None, 'detail': 'not installed'}
    if firewalld['installed']:
        try:
            firewalld['detail'], firewalld['version'] = Firewalld(module.run_command).state()
            firewalld['running'] = True
        except egress_transaction.EgressError as error:
            firewalld['detail'] = str(error)
    ufw_binary = module.get_bin_path('ufw', opt_dirs=SBIN)
    conf = egress_module.read_text(backend_choice.UFW_CONF)
    ufw = {'installed': bool(ufw_binary) and conf is not None, 'enabled': conf is not None and ufw_rules.ufw_enabled(conf)}
    found = {'firewalld': firewalld, 'ufw': ufw, 'nftables': find_nftables(module)}
    backend = backend_choice.choose(found)
    chosen = backend if module.params['backend'] == 'auto' else module.params['backend']
    applied, applied_error = read_applied(module, chosen, module.params['name'])
    fresh = fresh_origins(module.params)
    drift = egress_applied.plan_drift(applied, module.params['plan'], fresh and fresh['rules']) \
        if module.params['plan'] else None
    module.exit_json(changed=False, backend=backend, description=backend_choice.describe(found), applied=applied,
                     applied_error=applied_error, drift=drift, origins=fresh, **found)


if __name__ == '__main__':
    main()
