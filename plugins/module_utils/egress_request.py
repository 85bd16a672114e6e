# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The egress request: every firewall module's options, validated once, with one meaning for every backend.

``build(params, backend)`` turns the options of firewalld_egress, ufw_egress, nftables_egress or the Windows action
into one frozen ``Request`` - or raises RequestError naming the option and the value - before anything on the host is
read. Backends only render a Request; they never interpret options themselves. The meanings:

- a default deny needs at least one tunnel destination, whatever the backend;
- DNS allowances exist only under a default deny (without one, DNS gets out anyway), to ``dns_servers`` or else to
  the host's resolvers read from ``resolv_conf`` (``nameservers()``, the only place that reads the host);
- a default deny *rejects* on Linux (a blocked program fails at once instead of hanging); Windows can only block;
- the host's own plumbing under a default deny, one meaning for every backend (``HOST_SERVICES``): ``allow_dhcp``
  (default on) lets the DHCP client renew its lease, ``allow_mld`` (default on) lets IPv6 multicast listener reports
  out, ``allow_metadata`` (default off) opens the cloud instance metadata service. Like ``allow_dns`` they mean
  nothing without a default deny (everything gets out anyway), so the Request carries them already ANDed with it;
- names and purposes match whole strings (``\\Z``: a trailing newline is refused), addresses have no zone id.

Pure functions of plain data, standard library only (it runs on managed hosts and in the Windows action plugin).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ipaddress
import re

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract, origins as origin_options
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.dns_client import resolvers_to_allow

# One spelling for names everywhere: letters, digits, "-" and "_", starting with a letter or digit. A Windows rule
# group is matched with wildcards, so these characters also keep *, ? and [ out of it.
NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]*\Z')
PURPOSE_RE = re.compile(r'[a-z][a-z0-9_]*\Z')
MAX_PURPOSE = 20
# Backends whose object names are built from NAME limit it further (firewalld: policy names of 18 characters).
MAX_NAME = {'firewalld': 11, 'ufw': 64, 'nftables': 32, 'windows': 64}
STATES = ('present', 'absent', 'reverted')
CONFIRM_TIMEOUT, MAX_CONFIRM_TIMEOUT = 300, 86400  # the default when not given, and the most
LOCK_TIMEOUT, MAX_LOCK_TIMEOUT = 120, 3600
# What a default deny does to other traffic, per backend (the docs say the same).
DENY_ACTION = {'firewalld': 'reject', 'ufw': 'reject', 'nftables': 'reject', 'windows': 'block'}

Rule = collections.namedtuple('Rule', 'purpose protocol port ipv4 ipv6')
Extra = collections.namedtuple('Extra', 'protocol port ipv4 ipv6')
Request = collections.namedtuple('Request', 'backend name state rules extra_allow default_deny deny_action allow_dns '
                                            'dns_servers resolv_conf confirm_timeout lock_timeout allow_dhcp allow_mld '
                                            'allow_metadata origins private_networks cloudflared_config origin_report')

# What the host-service options allow, the same for every backend (each renders what its firewall can express).
# DHCP: the client's own ports, to any destination - a renewal (RENEWING) is unicast to the server that gave the
# lease, whose address the module cannot know; only the first lease and rebinding are broadcast (255.255.255.255,
# ff02::1:2). Most clients send those broadcasts through a packet socket that no firewall sees, but renewals go
# through an ordinary UDP socket and the output chain.
DHCP = (('ipv4', 68, 67), ('ipv6', 546, 547))  # (family, client port, server port), UDP
# MLD: what a listener sends - MLDv1 report (131) and done (132), MLDv2 report (143); switches that snoop MLD stop
# forwarding multicast (neighbour discovery included) to a port whose host never reports. Conntrack does not track
# these (they are neither requests nor answers), so "established, related" does not let them out.
MLD_TYPES = (131, 132, 143)
# The instance metadata service of the large clouds: 169.254.169.254 (AWS, Azure, GCP, OpenStack, Oracle,
# DigitalOcean ...) and AWS's IPv6 endpoint fd00:ec2::254, plain HTTP on TCP 80 (IMDSv2's PUT included); by family.
METADATA = {'ipv4': ('169.254.169.254/32',), 'ipv6': ('fd00:ec2::254/128',)}
METADATA_PORT = 80
DNS_PORT = 53
DNS_PROTOCOLS = ('udp', 'tcp')  # DNS to the resolvers, in the order the rules are written
# Option -> its default when not given (the module specs take them from here; the role says the same).
HOST_SERVICES = (('allow_dhcp', True), ('allow_mld', True), ('allow_metadata', False))
ALLOW_DNS = True  # allow_dns when not given


class RequestError(ValueError):
    """Bad options: the message names the option and the value; nothing on the host was read or changed."""


def _fail(where, value, why):
    raise RequestError('%s=%r: %s' % (where, value, why))


def check_name(value, backend, where='name'):
    """``value`` if it is a valid name no longer than ``backend`` allows (its object names derive from it), else a
    RequestError naming ``where``."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        _fail(where, value, 'expected ASCII letters, digits, "-" and "_", starting with a letter or digit')
    if len(value) > MAX_NAME[backend]:
        _fail(where, value, 'at most %d characters for %s' % (MAX_NAME[backend], backend))
    return value


def check_port(value, where):
    """``value`` if it is a port number from 1 to 65535 (not a bool), else a RequestError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        _fail(where, value, 'expected a port number from 1 to 65535')
    return value


def check_protocol(value, where):
    """``value`` if it is one of egress_contract.PROTOCOLS, else a RequestError naming ``where``."""
    if value not in egress_contract.PROTOCOLS:
        _fail(where, value, 'expected one of %s' % ', '.join(egress_contract.PROTOCOLS))
    return value


def check_seconds(value, where, maximum):
    """``value`` if it is whole seconds from 0 to ``maximum`` (not a bool), else a RequestError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        _fail(where, value, 'expected whole seconds from 0 to %d' % maximum)
    return value


def network(value, where, family=None):
    """A destination as its canonical CIDR text; host bits, /0, zone ids and the wrong family are refused."""
    text = value.strip(' ') if isinstance(value, str) else None
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        _fail(where, value, 'expected an IPv4 or IPv6 address or CIDR')
    if '%' in text:
        _fail(where, value, 'an IPv6 zone id (%%IFACE) names a link, not a destination: leave it out')
    try:
        parsed = ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        if 'host bits set' in str(error):
            _fail(where, value, 'host bits set; did you mean %s?' % ipaddress.ip_network(text, strict=False))
        _fail(where, value, 'not an IPv4 or IPv6 address or CIDR')
    if family and parsed.version != (4 if family == 'ipv4' else 6):
        _fail(where, value, 'an IPv%d destination in the %s list' % (parsed.version, family))
    if parsed.prefixlen == 0:
        _fail(where, value, 'a default route would allow everything; leave default_deny off instead')
    return str(parsed)


def _networks(values, where, family=None):
    if values is None:
        return ()
    if not isinstance(values, (list, tuple)):
        _fail(where, values, 'expected a list of addresses or CIDRs')
    result = []
    seen = set()  # a list alone makes 10,000 destinations cost 50 million comparisons
    for position, value in enumerate(values):
        text = network(value, '%s[%d]' % (where, position), family)
        if text not in seen:
            seen.add(text)
            result.append(text)
    return tuple(result)


def _split_families(texts):
    return (tuple(t for t in texts if ':' not in t), tuple(t for t in texts if ':' in t))


def _rule(index, item):
    where = 'rules[%d]' % index
    if not isinstance(item, dict):
        _fail(where, item, 'expected a dict with purpose, protocol, port, ipv4 and ipv6')
    purpose = item.get('purpose')
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose) or len(purpose) > MAX_PURPOSE:
        _fail(where + '.purpose', purpose,
              'expected at most %d lower-case letters, digits and "_", starting with a letter' % MAX_PURPOSE)
    return Rule(purpose, check_protocol(item.get('protocol'), where + '.protocol'), check_port(item.get('port'), where + '.port'),
                _networks(item.get('ipv4'), where + '.ipv4', 'ipv4'), _networks(item.get('ipv6'), where + '.ipv6', 'ipv6'))


def _extra(index, item):
    where = 'extra_allow[%d]' % index
    if not isinstance(item, dict):
        _fail(where, item, 'expected a dict with protocol, port and destinations')
    destinations = item.get('destinations')
    if not destinations:
        _fail(where + '.destinations', destinations, 'expected at least one address or CIDR')
    ipv4, ipv6 = _split_families(_networks(destinations, where + '.destinations'))
    return Extra(check_protocol(item.get('protocol'), where + '.protocol'), check_port(item.get('port'), where + '.port'),
                 ipv4, ipv6)


def _merge(rules):
    """Rules of the same (purpose, protocol, port) become one, their destinations joined in order."""
    merged = collections.OrderedDict()
    for rule in rules:
        key = (rule.purpose, rule.protocol, rule.port)
        if key in merged:
            old = merged[key]
            rule = old._replace(ipv4=old.ipv4 + tuple(a for a in rule.ipv4 if a not in old.ipv4),
                                ipv6=old.ipv6 + tuple(a for a in rule.ipv6 if a not in old.ipv6))
        merged[key] = rule
    return tuple(merged.values())


def build(params, backend):
    """The options of a firewall module -> Request; RequestError for the first bad one. Reads nothing."""
    name = check_name(params.get('name', 'tunnelwall'), backend)
    state = params.get('state') or 'present'
    if state not in STATES:
        _fail('state', state, 'expected one of %s' % ', '.join(STATES))
    default_deny = bool(params.get('default_deny')) and state == 'present'
    allow_dns = params.get('allow_dns')
    allow_dns = ALLOW_DNS if allow_dns is None else bool(allow_dns)
    services = dict((option, _flag(params, option, default)) for option, default in HOST_SERVICES)
    rules = extra = ()
    if state == 'present':
        if params.get('rules') is None:
            _fail('rules', None, 'required with state=present (an empty list removes every allow rule)')
        if not isinstance(params['rules'], (list, tuple)):
            _fail('rules', params['rules'], 'expected a list of the egress plan\'s rules')
        rules = _merge(_rule(i, r) for i, r in enumerate(params['rules']))
        extra_items = params.get('extra_allow') or []
        if not isinstance(extra_items, (list, tuple)):
            _fail('extra_allow', extra_items, 'expected a list of {protocol, port, destinations}')
        extra = tuple(_extra(i, e) for i, e in enumerate(extra_items))
        if cuts_the_tunnel(params):
            _fail('default_deny', True, 'no tunnel destination in rules: the host could not reach the tunnel edge; '
                                        "pass the egress plan's rules")
    dns_servers = params.get('dns_servers')
    dns_servers = _networks(dns_servers, 'dns_servers') if dns_servers else ()
    for position, server in enumerate(dns_servers):
        if '/' in server and not server.endswith(('/32', '/128')):
            _fail('dns_servers[%d]' % position, server, 'expected a nameserver address, not a network')
    dns_servers = tuple(s.split('/')[0] for s in dns_servers)
    resolv_conf = params.get('resolv_conf') or '/etc/resolv.conf'
    if not isinstance(resolv_conf, str) or not resolv_conf.startswith('/') or '\n' in resolv_conf or '\x00' in resolv_conf:
        _fail('resolv_conf', resolv_conf, 'expected an absolute path')
    confirm_timeout = check_seconds(params.get('confirm_timeout', CONFIRM_TIMEOUT), 'confirm_timeout', MAX_CONFIRM_TIMEOUT)
    lock_timeout = check_seconds(params.get('lock_timeout', LOCK_TIMEOUT), 'lock_timeout', MAX_LOCK_TIMEOUT)
    # cloudflared's origins (origins.py): checked here, read from the host and resolved there by egress_module.
    try:
        origins = origin_options.check_origins(params.get('origins'))
        private_networks = origin_options.check_private_networks(params.get('private_networks'))
        cloudflared_config = origin_options.check_config_setting(params.get('cloudflared_config'))
    except origin_options.OriginError as error:
        raise RequestError(str(error))
    return Request(backend, name, state, rules, extra, default_deny, DENY_ACTION[backend], default_deny and allow_dns,
                   dns_servers, resolv_conf, confirm_timeout, lock_timeout,
                   origins=origins, private_networks=private_networks, cloudflared_config=cloudflared_config,
                   origin_report=None, **dict((option, default_deny and value) for option, value in services.items()))


def with_origin_rules(request, rules, report):
    """The request with the origins' rules (the egress plan's shape, purpose origin) merged in, and their report."""
    checked = tuple(_rule(index, rule) for index, rule in enumerate(rules))
    return request._replace(rules=_merge(request.rules + checked), origin_report=report)


def _flag(params, option, default):
    """A boolean option: None means its default; anything but a bool is refused (AnsibleModule converts "yes" first)."""
    value = params.get(option)
    if value is None:
        return default
    if not isinstance(value, bool):
        _fail(option, value, 'expected true or false')
    return value


def nameservers(request, resolv_conf_servers, stub_upstream_servers):
    """The resolvers DNS is allowed to: none without a default deny, else dns_servers or the host's resolvers.

    The two lists are what dns_client.read_resolv_conf gave for ``request.resolv_conf`` and systemd-resolved's
    upstream file; a loopback stub brings its upstream servers in (dns_client.resolvers_to_allow). Raises
    RequestError when DNS must be allowed and no usable nameserver is known.
    """
    if not request.allow_dns:
        return ()
    if request.dns_servers:
        return request.dns_servers
    servers = tuple(s.split('%')[0] for s in resolvers_to_allow(resolv_conf_servers, stub_upstream_servers))
    if not servers:
        _fail('allow_dns', True, 'no usable nameserver in %s (loopback ones without a known upstream do not count); set '
                                 'dns_servers, or allow_dns=false if the host needs no DNS' % request.resolv_conf)
    return servers


def cuts_the_tunnel(params):
    """True when a firewall module's options ask for a default deny (state present) whose ``rules`` (the egress plan's,
    as dicts) hold no tunnel destination: the host could no longer reach the tunnel edge. The one test of it: build
    refuses such options, and the role refuses them before it connects (plugin_utils/backend_modules.refusal)."""
    if (params.get('state') or 'present') != 'present' or not params.get('default_deny'):
        return False
    return not any(rule.get('ipv4') or rule.get('ipv6') for rule in params.get('rules') or []
                   if isinstance(rule, dict) and rule.get('purpose') == 'tunnel')


def metadata_destinations(request):
    """(ipv4, ipv6) of the metadata service when the request allows it, else two empty tuples."""
    return tuple(METADATA[family] if request.allow_metadata else () for family in egress_contract.FAMILIES)
