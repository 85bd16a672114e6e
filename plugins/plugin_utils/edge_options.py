# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of the edge_endpoints options into one immutable value.

Every check names the option and the offending value, and runs before any
query is sent, so bad input never costs a DNS round trip.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math

from ansible.errors import AnsibleOptionsError
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import cloudflare_catalog, edge_names

# The probe's choices too (auto, 4, 6, both): one set of names everywhere. On the controller `auto` is `both` -
# which family a host can use is the probe's to find out, so the plan carries both.
IP_VERSIONS = ('both', '4', '6', 'auto')
ON_DNS_FAILURE = ('fail', 'catalog')
# Widening beyond these would cover address space far outside any single
# Cloudflare block; the ownership guard would only warn, so refuse outright.
PREFIX_LIMITS = {'prefix_v4': (16, 32), 'prefix_v6': (32, 128)}


@dataclasses.dataclass(frozen=True)
class ExtraHostname:
    hostname: str
    port: int
    protocols: tuple
    verify_ownership: bool


@dataclasses.dataclass(frozen=True)
class EdgeOptions:
    region: str = 'global'
    generation: str = 'v2'
    purposes: tuple = edge_names.PURPOSES
    extra_hostnames: tuple = ()
    ip_version: str = 'both'
    nameservers: tuple = ()
    port: int = 53
    timeout: float = 2.0
    lifetime: float = 5.0
    tcp: bool = False
    dot_fallback: bool = False
    dot_server: str = '1.1.1.1'
    dot_server_name: str = 'cloudflare-dns.com'
    dot_port: int = 853
    dot_ca_path: str | None = None
    prefix_v4: int = 32
    prefix_v6: int = 128
    verify_ownership: bool = True
    trusted_ranges: tuple = ()
    on_dns_failure: str = 'fail'

    @property
    def families(self):
        """The address families ``ip_version`` asks for, as plans name them."""
        return {'both': egress_contract.FAMILIES, '4': ('ipv4',), '6': ('ipv6',)}[self.ip_version]

    @property
    def ranges(self):
        """The ranges the ownership guard accepts, by family."""
        if not self.trusted_ranges:
            return {family: tuple(ipaddress.ip_network(r) for r in cidrs)
                    for family, cidrs in cloudflare_catalog.CLOUDFLARE_RANGES.items()}
        return {
            'ipv4': tuple(n for n in self.trusted_ranges if n.version == 4),
            'ipv6': tuple(n for n in self.trusted_ranges if n.version == 6),
        }

    def cache_key(self):
        """Everything that changes the answer, as a stable JSON-able value."""
        return dataclasses.asdict(self) | {'trusted_ranges': [str(n) for n in self.trusted_ranges]}


def _shown(value):
    """The value as the error shows it: a 10,000-entry list is not repeated in full."""
    text = repr(value)
    return text if len(text) <= 200 else '%s... (%d characters)' % (text[:180], len(text))


def _fail(option, value, expected):
    raise AnsibleOptionsError('edge_endpoints: invalid %s=%s: %s' % (option, _shown(value), expected))


def _choice(option, value, choices):
    text = str(value).lower() if value is not None else value
    if text not in choices:
        _fail(option, value, 'expected one of %s' % ', '.join(choices))
    return text


def _as_list(option, value):
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(',') if item.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return _fail(option, value, 'expected a list')


def _integer(option, value, low, high):
    if isinstance(value, bool):
        _fail(option, value, 'expected an integer from %d to %d' % (low, high))
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        _fail(option, value, 'expected an integer from %d to %d' % (low, high))
    return number


def _seconds(option, value):
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        number = None
    if isinstance(value, bool) or number is None or not 0 < number <= 300:
        _fail(option, value, 'expected a number of seconds greater than 0 and at most 300')
    return number


def _boolean(option, value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('yes', 'true', 'on', '1'):
        return True
    if text in ('no', 'false', 'off', '0'):
        return False
    return _fail(option, value, 'expected a boolean')


def _ip_literal(option, value):
    text = str(value).strip().strip('[]')
    if '%' in text:
        # Python 3.9+ parses fe80::1%eth0; a zone names an interface of the controller, not a server.
        _fail(option, value, 'expected an IPv4 or IPv6 address literal without a zone id (%...)')
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return _fail(option, value, 'expected an IPv4 or IPv6 address literal')


def _hostname(option, value):
    text = str(value).strip().rstrip('.').lower() if isinstance(value, str) else ''
    if not edge_names.is_hostname(text):
        _fail(option, value, 'expected a fully qualified host name such as github.com (ASCII letters, digits, '
                             "'-' and '_'; an internationalised name in its xn-- form)")
    return text


def _purposes(value):
    # `extra` is accepted as the role takes it (egress_firewall_purposes): the plan's extra host names come from
    # extra_hostnames and are always in it, so one list of purposes works for the lookup and the role.
    items = [_choice('purposes', item, edge_names.PURPOSES + ('extra',)) for item in _as_list('purposes', value)]
    # The tunnel is the reason this plan exists: it is always in it.
    chosen = set(items) | {'tunnel'}
    return tuple(p for p in edge_names.PURPOSES if p in chosen)


def _extra_hostnames(value):
    extras = []
    for item in _as_list('extra_hostnames', value):
        entry = {'hostname': item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or 'hostname' not in entry:
            _fail('extra_hostnames', item, 'expected a host name or a dict with hostname, port, protocols')
        unknown = set(entry) - {'hostname', 'port', 'protocols', 'verify_ownership'}
        if unknown:
            _fail('extra_hostnames', item, 'unknown keys %s' % ', '.join(sorted(map(str, unknown))))
        protocols = [_choice('extra_hostnames.protocols', p, egress_contract.PROTOCOLS)
                     for p in _as_list('extra_hostnames.protocols', entry.get('protocols', ['tcp']))]
        if not protocols:
            _fail('extra_hostnames.protocols', entry.get('protocols'), 'expected tcp, udp or both')
        extras.append(ExtraHostname(
            hostname=_hostname('extra_hostnames.hostname', entry['hostname']),
            port=_integer('extra_hostnames.port', entry.get('port', edge_names.HTTPS_PORT), 1, 65535),
            protocols=tuple(sorted(set(protocols))),
            verify_ownership=_boolean('extra_hostnames.verify_ownership', entry.get('verify_ownership', False)),
        ))
    return tuple(sorted(set(extras), key=lambda e: (e.hostname, e.port)))


def _trusted_ranges(value):
    networks = []
    for item in _as_list('trusted_ranges', value):
        if '%' in str(item):
            _fail('trusted_ranges', item, 'expected a network in CIDR form without a zone id (%...)')
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=True))
        except ValueError as exc:
            _fail('trusted_ranges', item, 'expected a network in CIDR form without host bits (%s)' % exc)
    return tuple(sorted(set(networks), key=lambda n: (n.version, n)))


def check_raw(direct):
    """Checks Ansible's own option conversion would fail on with an exception rather than an error.

    ansible-core converts a float option with float(), which raises OverflowError on an integer beyond a
    float's range (timeout=10**400): refuse it here first, by name. Run on the options given to the lookup.
    """
    for name in ('timeout', 'lifetime'):
        value = direct.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)
            except OverflowError:
                _fail(name, value, 'expected a number of seconds greater than 0 and at most 300')
    # ... and converts an int option with int(), which raises OverflowError on float('inf').
    for name, (low, high) in dict(PREFIX_LIMITS, port=(1, 65535), dot_port=(1, 65535)).items():
        value = direct.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            _integer(name, value, low, high)
    # ansible-core reads any unknown string as false for a bool option (tcp=maybe is tcp=false): be strict.
    for name in ('tcp', 'dot_fallback', 'verify_ownership', 'cache'):
        if direct.get(name) is not None:
            _boolean(name, direct[name])


def parse_options(get):
    """Build EdgeOptions from a getter of raw option values (``get(name)``).

    Missing values (None) take the defaults of EdgeOptions.
    """
    defaults = EdgeOptions()

    def raw(name):
        """The value of option ``name``, or EdgeOptions' default when it is not set."""
        value = get(name)
        return getattr(defaults, name) if value is None else value

    options = EdgeOptions(
        region=_choice('region', raw('region'), edge_names.REGIONS),
        generation=_choice('generation', raw('generation'), edge_names.GENERATIONS),
        purposes=_purposes(raw('purposes')),
        extra_hostnames=_extra_hostnames(raw('extra_hostnames')),
        # auto is both here: one plan (and one cache entry) for the two spellings.
        ip_version=_choice('ip_version', raw('ip_version'), IP_VERSIONS).replace('auto', 'both'),
        nameservers=tuple(_ip_literal('nameservers', ns) for ns in _as_list('nameservers', raw('nameservers'))),
        port=_integer('port', raw('port'), 1, 65535),
        timeout=_seconds('timeout', raw('timeout')),
        lifetime=_seconds('lifetime', raw('lifetime')),
        tcp=_boolean('tcp', raw('tcp')),
        dot_fallback=_boolean('dot_fallback', raw('dot_fallback')),
        dot_server=_ip_literal('dot_server', raw('dot_server')),
        dot_server_name=_hostname('dot_server_name', raw('dot_server_name')),
        dot_port=_integer('dot_port', raw('dot_port'), 1, 65535),
        dot_ca_path=get('dot_ca_path') or None,
        prefix_v4=_integer('prefix_v4', raw('prefix_v4'), *PREFIX_LIMITS['prefix_v4']),
        prefix_v6=_integer('prefix_v6', raw('prefix_v6'), *PREFIX_LIMITS['prefix_v6']),
        verify_ownership=_boolean('verify_ownership', raw('verify_ownership')),
        trusted_ranges=_trusted_ranges(raw('trusted_ranges')),
        on_dns_failure=_choice('on_dns_failure', raw('on_dns_failure'), ON_DNS_FAILURE),
    )
    if options.lifetime < options.timeout:
        _fail('lifetime', options.lifetime, 'must be at least timeout (%s)' % options.timeout)
    if options.generation != 'v2' and options.region != 'global':
        _fail('generation', options.generation,
              'the original cloudflared names only covered the global edge; region=%s needs generation=v2'
              % options.region)
    if options.trusted_ranges and not options.verify_ownership:
        _fail('trusted_ranges', [str(n) for n in options.trusted_ranges],
              'has no effect with verify_ownership=false; drop one of them')
    return options
