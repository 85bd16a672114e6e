# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options edge_probe and win_edge_probe share, and the checks AnsibleModule cannot make."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

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
                 choices=list(egress_contract.REQUIREMENTS)),
)

ENDPOINT_KEYS = egress_contract.ENDPOINT_KEYS
PURPOSES = egress_contract.PURPOSES
CHECKS = ('dns', 'tcp', 'tls', 'quic', 'https')
FAMILY_VERSION = {'ipv4': 4, 'ipv6': 6}
# ASCII letters, digits, '-' and '_': what a DNS query and an SNI can carry (an IDN goes in its xn-- form).
LABEL = re.compile(r'[A-Za-z0-9_-]{1,63}\Z')
CONTROL = re.compile(r'[\x00-\x1f\x7f]')


def _shown(value):
    """repr of a value for a message, cut short: a 10,000-entry list is not repeated in full."""
    text = repr(value)
    return text if len(text) <= 120 else '%s... (%d characters)' % (text[:100], len(text))


def hostname_problem(value):
    """Why ``value`` is not a DNS host name the probe can ask for and send as SNI; None when it is."""
    if not isinstance(value, str) or not value:
        return 'expected a host name'
    try:
        value.encode('ascii')
    except UnicodeError:
        return 'expected an ASCII host name (an internationalised name in its xn-- form)'
    labels = value.split('.')
    if len(value) > 253 or not all(LABEL.match(label) for label in labels):
        return "expected a host name: labels of 1 to 63 letters, digits, '-' or '_' separated by single dots"
    return None


def _port_problem(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return 'expected an integer from 1 to 65535'
    return None


def address_problem(value, version=None):
    """Why ``value`` is not an address literal to connect to; None when it is."""
    if not isinstance(value, str):
        return 'expected an IPv4 or IPv6 address literal'
    if '%' in value:
        # Python 3.9+ parses fe80::1%eth0, 3.8 does not; a zone names an interface of one host, not an edge address.
        return 'an IPv6 zone id (%...) has no place in an egress plan or target'
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return 'expected an IPv4 or IPv6 address literal'
    if version and address.version != version:
        return 'expected an IPv%d address' % version
    return None


def _endpoint_problem(index, endpoint, server_names, checks):
    where = 'plan: endpoints[%d]' % index
    if not isinstance(endpoint, dict):
        return '%s=%s: expected a dict' % (where, _shown(endpoint))
    missing = [key for key in ENDPOINT_KEYS if key not in endpoint]
    if missing:
        return '%s lacks %s' % (where, ', '.join(missing))
    problem = hostname_problem(endpoint['hostname'])
    if problem:
        return '%s.hostname=%s: %s' % (where, _shown(endpoint['hostname']), problem)
    where = '%s (%s)' % (where, endpoint['hostname'])
    if endpoint['purpose'] not in PURPOSES:
        return '%s has purpose=%s: expected one of %s' % (where, _shown(endpoint['purpose']), ', '.join(PURPOSES))
    if _port_problem(endpoint['port']):
        return '%s has port=%s: %s' % (where, _shown(endpoint['port']), _port_problem(endpoint['port']))
    protocols = endpoint['protocols']
    if not isinstance(protocols, list) or not protocols or not all(p in egress_contract.PROTOCOLS for p in protocols):
        return '%s has protocols=%s: expected a list of tcp, udp' % (where, _shown(protocols))
    names = endpoint.get('server_names') or {}
    if not isinstance(names, dict):
        return '%s has server_names=%s: expected a dict of tcp, udp' % (where, _shown(names))
    for protocol in protocols:
        # A tunnel handshake needs the name to send as SNI; the module's server_names option may give it.
        name = server_names.get(protocol) or names.get(protocol)
        handshake = {'tcp': 'tls', 'udp': 'quic'}[protocol]
        if endpoint['purpose'] == 'tunnel' and not name and handshake in checks:
            return ('%s has no server_names.%s: a tunnel endpoint needs the name its %s handshake sends '
                    '(or set the server_names option)' % (where, protocol, protocol))
        if name is not None and hostname_problem(name):
            return '%s has server_names.%s=%s: %s' % (where, protocol, _shown(name), hostname_problem(name))
    for family in egress_contract.FAMILIES:
        addresses = endpoint.get(family) or []
        if not isinstance(addresses, list):
            return '%s has %s=%s: expected a list of addresses' % (where, family, _shown(addresses))
        for address in addresses:
            problem = address_problem(address, FAMILY_VERSION[family])
            if problem:
                return '%s has %s=%s: %s' % (where, family, _shown(address), problem)
    return None


DNS_TYPES = ('A', 'AAAA', 'TXT')


def _dns_names_problem(entries):
    """Why the plan's ``dns_names`` (the lookup's list of other names cloudflared resolves) cannot be asked."""
    if not isinstance(entries, list):
        return 'plan: dns_names=%s: expected a list of {name, types}' % _shown(entries)
    for index, entry in enumerate(entries):
        where = 'plan: dns_names[%d]' % index
        if not isinstance(entry, dict) or hostname_problem(entry.get('name')):
            return '%s=%s: expected {name, types} with a host name' % (where, _shown(entry))
        types = entry.get('types')
        if not isinstance(types, list) or not types or not all(t in DNS_TYPES for t in types):
            return '%s.types=%s: expected a list of %s' % (where, _shown(types), ', '.join(DNS_TYPES))
    return None


def _plan_problem(plan, server_names, checks):
    if plan.get('version') != egress_contract.PLAN_VERSION or isinstance(plan.get('version'), bool):
        return 'plan: version %s is not an egress plan this collection reads (expected %d)' % (
            _shown(plan.get('version')), egress_contract.PLAN_VERSION)
    endpoints = plan.get('endpoints')
    if not isinstance(endpoints, list) or not endpoints:
        return 'plan: no endpoints; pass the whole result of the tunnelwall.cloudflared.edge_endpoints lookup'
    srv_names = plan.get('srv_names') or []
    if not isinstance(srv_names, list):
        return 'plan: srv_names=%s: expected a list of names' % _shown(srv_names)
    for index, name in enumerate(srv_names):
        if hostname_problem(name):
            return 'plan: srv_names[%d]=%s: %s' % (index, _shown(name), hostname_problem(name))
    problem = _dns_names_problem(plan.get('dns_names') or [])
    if problem:
        return problem
    for index, endpoint in enumerate(endpoints):
        problem = _endpoint_problem(index, endpoint, server_names, checks)
        if problem:
            return problem
    return None


def _target_problem(index, target):
    problem = address_problem(target['address'])
    if problem:
        return 'targets[%d].address=%s: %s' % (index, _shown(target['address']), problem)
    if _port_problem(target['port']):
        return 'targets[%d].port=%r: expected 1 to 65535' % (index, target['port'])
    if target['check'] != 'tcp' and not target.get('server_name'):
        return 'targets[%d]: check=%s needs a server_name' % (index, target['check'])
    for key in ('server_name', 'hostname'):
        if target.get(key) is not None and hostname_problem(target[key]):
            return 'targets[%d].%s=%s: %s' % (index, key, _shown(target[key]), hostname_problem(target[key]))
    return None


def validate_probe_params(params):
    """The first problem with the options, as a message naming option and value; None when fine."""
    if params['timeout'] is None or not 0 < params['timeout'] <= 120:
        return 'timeout=%r: expected seconds greater than 0 and at most 120' % params['timeout']
    if params.get('ca_path') and CONTROL.search(params['ca_path']):
        return 'ca_path=%s: a path with control characters' % _shown(params['ca_path'])
    if params['concurrency'] < 1:
        return 'concurrency=%r: expected at least 1' % params['concurrency']
    server_names = params['server_names'] or {}
    endpoints = (params['plan'] or {}).get('endpoints')
    unknown = sorted(str(key) for key in set(server_names) - set(egress_contract.PROTOCOLS) - set(
        e.get('hostname') for e in (endpoints if isinstance(endpoints, list) else [])
        if isinstance(e, dict) and isinstance(e.get('hostname'), str)))
    if unknown:
        listed = ', '.join(unknown)
        return 'server_names: %s is neither tcp, udp nor a host name of the plan' % (
            listed if len(listed) <= 120 else listed[:100] + '... (%d names)' % len(unknown))
    for key in sorted(server_names, key=str):
        if hostname_problem(server_names[key]):
            return 'server_names.%s=%s: %s' % (key, _shown(server_names[key]), hostname_problem(server_names[key]))
    if params['plan'] is not None:
        return _plan_problem(params['plan'], server_names, params.get('checks') or CHECKS)
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
        return list(egress_contract.FAMILIES)
    addresses = {'ipv4': [], 'ipv6': []}
    if params['plan']:
        for endpoint in params['plan']['endpoints']:
            for family in addresses:
                addresses[family].extend(endpoint.get(family) or [])
    else:
        for target in params['targets']:
            addresses['ipv6' if ':' in target['address'] else 'ipv4'].append(target['address'])
    return routable(addresses)
