# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options edge_probe and win_edge_probe share, and the checks AnsibleModule cannot make."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract

PROBE_ARGUMENT_SPEC = dict(
    plan=dict(type='dict'),
    targets=dict(type='list', elements='dict', options=dict(
        address=dict(type='str', required=True),
        port=dict(type='int', required=True),
        check=dict(type='str', required=True, choices=['tcp', 'tls', 'quic', 'https']),
        server_name=dict(type='str'),
        hostname=dict(type='str'),
        purpose=dict(type='str', default='extra', choices=list(egress_contract.PURPOSES)),
    )),
    checks=dict(type='list', elements='str', choices=['dns', 'tcp', 'tls', 'quic', 'https']),
    purposes=dict(type='list', elements='str', choices=list(egress_contract.PURPOSES)),
    ip_version=dict(type='str', default='auto', choices=['auto', '4', '6', 'both']),
    timeout=dict(type='float', default=3.0),
    concurrency=dict(type='int', default=512),
    validate_certs=dict(type='bool', default=True),
    ca_path=dict(type='path'),
    server_names=dict(type='dict', default={}),
    require=dict(type='list', elements='str', default=['any_tunnel'],
                 choices=['any_tunnel', 'quic', 'http2', 'api', 'update', 'dns']),
)

ENDPOINT_KEYS = egress_contract.ENDPOINT_KEYS


def _plan_problem(plan):
    if plan.get('version') != egress_contract.PLAN_VERSION:
        return 'plan: version %r is not an egress plan this collection reads (expected %d)' % (
            plan.get('version'), egress_contract.PLAN_VERSION)
    endpoints = plan.get('endpoints')
    if not isinstance(endpoints, list) or not endpoints:
        return 'plan: no endpoints; pass the whole result of the tunnelwall.cloudflared.edge_endpoints lookup'
    for index, endpoint in enumerate(endpoints):
        missing = [key for key in ENDPOINT_KEYS if key not in endpoint] if isinstance(endpoint, dict) else ENDPOINT_KEYS
        if missing:
            return 'plan: endpoints[%d] lacks %s' % (index, ', '.join(missing))
        for family in egress_contract.FAMILIES:
            for address in endpoint.get(family) or []:
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    return 'plan: endpoints[%d] (%s) has %s=%r, not an address' % (index, endpoint['hostname'], family, address)
    return None


def _target_problem(index, target):
    try:
        ipaddress.ip_address(target['address'])
    except ValueError:
        return 'targets[%d].address=%r: expected an IPv4 or IPv6 address literal' % (index, target['address'])
    if not 1 <= target['port'] <= 65535:
        return 'targets[%d].port=%r: expected 1 to 65535' % (index, target['port'])
    if target['check'] != 'tcp' and not target.get('server_name'):
        return 'targets[%d]: check=%s needs a server_name' % (index, target['check'])
    return None


def validate_probe_params(params):
    """The first problem with the options, as a message naming option and value; None when fine."""
    if params['timeout'] is None or not 0 < params['timeout'] <= 120:
        return 'timeout=%r: expected seconds greater than 0 and at most 120' % params['timeout']
    if params['concurrency'] < 1:
        return 'concurrency=%r: expected at least 1' % params['concurrency']
    unknown = sorted(set(params['server_names'] or {}) - {'tcp', 'udp'} - set(
        e.get('hostname') for e in ((params['plan'] or {}).get('endpoints') or []) if isinstance(e, dict)))
    if unknown:
        return 'server_names: %s is neither tcp, udp nor a host name of the plan' % ', '.join(unknown)
    if params['plan'] is not None:
        return _plan_problem(params['plan'])
    for index, target in enumerate(params['targets'] or []):
        problem = _target_problem(index, target)
        if problem:
            return problem
    if not params['targets']:
        return 'targets: empty; give a plan or at least one target'
    return None


def families_for(params, routable):
    """The address families to probe; ``routable(addresses by family)`` decides for ip_version=auto."""
    chosen = params['ip_version']
    if chosen == '4':
        return ['ipv4']
    if chosen == '6':
        return ['ipv6']
    if chosen == 'both':
        return ['ipv4', 'ipv6']
    addresses = {'ipv4': [], 'ipv6': []}
    if params['plan']:
        for endpoint in params['plan']['endpoints']:
            for family in addresses:
                addresses[family].extend(endpoint.get(family) or [])
    else:
        for target in params['targets']:
            addresses['ipv6' if ':' in target['address'] else 'ipv4'].append(target['address'])
    return routable(addresses)
