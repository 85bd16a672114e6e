# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which firewall module each backend has, and the arguments it gets: the firewall_egress action's pure part.

The role hands over data - the host's plan, the purposes to allow, what egress_firewall_info found, the module
options - and this decides the module by the backend's name, refuses what cannot work (no firewall, a default deny
that would cut the tunnel) with a message naming the variable, and builds the rules and the verification's plan.
"""

from __future__ import annotations

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request

# The firewall module of each backend.
BACKEND_MODULES = {
    'firewalld': 'tunnelwall.cloudflared.firewalld_egress',
    'nftables': 'tunnelwall.cloudflared.nftables_egress',
    'ufw': 'tunnelwall.cloudflared.ufw_egress',
    'windows': 'tunnelwall.cloudflared.win_firewall_egress',
}


def rules_for(plan, purposes):
    """The plan's rules of the purposes to allow."""
    return [rule for rule in plan.get('rules') or [] if rule.get('purpose') in purposes]


def verify_plan(plan, purposes):
    """The plan the verification probes: limited to the purposes allowed (a purpose left out is not expected to work)."""
    return dict(plan, endpoints=[endpoint for endpoint in plan.get('endpoints') or [] if endpoint.get('purpose') in purposes],
                rules=rules_for(plan, purposes))


def refusal(host, backend, found, options, plan, purposes):
    """Why the change must not run (a sentence naming the variable), or None."""
    if (found or {}).get('unreachable'):
        return 'cannot reach %s: %s' % (host, found.get('msg') or 'no connection')
    if not backend:
        return ('egress_firewall_backend=auto found no firewall to write on %s: %s. Start firewalld, enable ufw or '
                'install nftables (nft), or set egress_firewall_backend.' % (host, (found or {}).get('description') or 'nothing'))
    if egress_request.cuts_the_tunnel(dict(options, rules=rules_for(plan, purposes))):
        return ('egress_firewall_default_deny=true, but the rules to apply hold no tunnel destination '
                '(egress_firewall_purposes=%s, plan rules: %s): the host could no longer reach the tunnel edge.'
                % (','.join(purposes), ','.join(dict.fromkeys(rule.get('purpose') for rule in plan.get('rules') or []))))
    return None


def module_args(backend, options, plan, purposes, verify):
    """The backend module's arguments: ``options`` plus the rules (state present) and the verification (when asked)."""
    args = dict(options)
    if backend != 'windows':
        args.pop('profiles', None)
    if args.get('state', 'present') == 'present':
        args['rules'] = rules_for(plan, purposes)
        if verify is not None:
            args['verify'] = dict(verify, plan=verify_plan(plan, purposes))
    return args
