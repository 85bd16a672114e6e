# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's half of win_firewall_egress: from the plan's rules to the Windows rules wanted.

Validation and the rule set are computed here, in Python the tests run; the
PowerShell module only reads the group's rules, compares and applies. Windows
rewrites addresses (``198.51.100.7/32`` comes back as ``198.51.100.7``,
``/24`` as ``198.51.100.0/255.255.255.0``): the desired addresses are sent in
the canonical form ``canonical_address`` gives, and the module brings what
Windows returns to the same form before comparing.
"""

from __future__ import annotations

import ipaddress

PROTOCOLS = ('tcp', 'udp')
PROFILES = ('Domain', 'Private', 'Public')


class RuleError(ValueError):
    """Bad input, with a message naming the option and the value."""


def canonical_address(text):
    """``198.51.100.7`` / ``198.51.100.7/32`` / ``198.51.100.0/255.255.255.0`` -> ``198.51.100.7/32`` etc."""
    network = ipaddress.ip_network(str(text).strip(), strict=True)
    return str(network)


def _addresses(option, values):
    out = []
    for value in values or []:
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=True))
        except ValueError as error:
            raise RuleError('%s: %r is not an address or a network without host bits (%s)' % (option, value, error))
    # Sorted and without duplicates, so a second run compares equal.
    return [str(n) for n in sorted(set(out), key=lambda n: (n.version, n))]


def _port(option, value):
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = None
    if port is None or isinstance(value, bool) or not 1 <= port <= 65535:
        raise RuleError('%s: port %r is not between 1 and 65535' % (option, value))
    return port


def _protocol(option, value):
    protocol = str(value).lower()
    if protocol not in PROTOCOLS:
        raise RuleError('%s: protocol %r is not tcp or udp' % (option, value))
    return protocol


def desired_rules(params):
    """One outbound allow rule per (purpose, protocol, port), named after the group."""
    group = params['name']
    wanted = {}

    def add(purpose, protocol, port, addresses, option):
        key = (purpose, _protocol(option, protocol), _port(option, port))
        rule = wanted.setdefault(key, {'purpose': key[0], 'protocol': key[1], 'port': key[2], 'addresses': []})
        rule['addresses'] = _addresses(option, rule['addresses'] + list(addresses))

    for index, rule in enumerate(params['rules'] or []):
        option = 'rules[%d]' % index
        addresses = list(rule.get('ipv4') or []) + list(rule.get('ipv6') or [])
        if not addresses:
            raise RuleError('%s: no ipv4 or ipv6 destinations' % option)
        add(rule.get('purpose') or 'tunnel', rule.get('protocol'), rule.get('port'), addresses, option)
    if params['default_deny'] and params['allow_dns']:
        servers = params['dns_servers'] or []
        if not servers:
            raise RuleError('allow_dns: no dns_servers given; list the resolvers Windows uses, or set allow_dns: false')
        for protocol in PROTOCOLS:
            add('dns', protocol, 53, ['%s' % s for s in servers], 'dns_servers')
    for index, extra in enumerate(params['extra_allow'] or []):
        add('extra', extra.get('protocol'), extra.get('port'), extra.get('destinations') or [], 'extra_allow[%d]' % index)
    out = []
    for key in sorted(wanted):
        rule = wanted[key]
        rule['display_name'] = '%s: %s %s/%d' % (group, rule['purpose'], rule['protocol'], rule['port'])
        out.append(rule)
    return out


def prepare(params):
    """The Windows module's arguments, or RuleError."""
    name = params['name']
    if not name or len(name) > 100 or any(c in name for c in '|\\"'):
        raise RuleError('name: %r must be 1 to 100 characters without | \\ or "' % name)
    unknown = [p for p in params['profiles'] if p not in PROFILES]
    if unknown:
        raise RuleError('profiles: %s is not one of %s' % (', '.join(unknown), ', '.join(PROFILES)))
    rules = desired_rules(params) if params['state'] == 'present' else []
    if params['state'] == 'present' and params['default_deny'] and not any(r['purpose'] == 'tunnel' for r in rules):
        raise RuleError('default_deny: refusing to block all outbound traffic without a tunnel rule: cloudflared could '
                        'never reach its edge')
    return {'group': name, 'rules': rules, 'default_deny': params['default_deny'], 'profiles': list(params['profiles']),
            'state': params['state']}
