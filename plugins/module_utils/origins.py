# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloudflared's origins as egress destinations: the options, the host's config and resolver, the check after a change.

Three sources, one shape (purpose ``origin`` rules of the request, rendered by every backend like any other rule):

- ``origins``: [{host, port, protocol}] given by the user (host: a name, an address or a CIDR);
- ``private_networks``: [{network, ports, protocol}] for warp-routing (private networks routed to the tunnel);
- ``cloudflared_config``: ``auto`` (where cloudflared itself looks, cloudflared_config.find), a path, or ``none``:
  every ingress rule's service (cloudflared_config.destinations).

Names are resolved here, on the host, with its resolver (origins are often internal names), in the module run that
applies them; a name that does not resolve fails the run before anything changes. All of it only under a default
deny - without one everything gets out anyway and nothing is read.

``check_after`` proves from the host that every TCP origin is allowed by the firewall: see its docstring for how an
origin's own refusal is told from the new rules' TCP reset.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import ipaddress
import socket
import threading

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import cloudflared_config

PURPOSE = 'origin'
CONFIG_SETTINGS = ('auto', 'none')
Origin = collections.namedtuple('Origin', 'host port protocol source')
CONNECT_TIMEOUT = 3.0


class OriginError(ValueError):
    """Bad origin options or a config/name that cannot be used; the message names what; nothing was changed."""


def _fail(where, value, why):
    raise OriginError('%s=%r: %s' % (where, value, why))


def _host(value, where):
    """A name, an address or a CIDR, as text; control characters, blanks, URLs and /0 refused."""
    if not isinstance(value, str) or not value.strip() or any(ord(c) <= 32 or ord(c) == 127 for c in value):
        _fail(where, value, 'expected a host name, an IPv4/IPv6 address or a CIDR')
    if value.startswith('[') or '://' in value:
        _fail(where, value, 'expected a host name, an IPv4/IPv6 address or a CIDR, without brackets or scheme')
    if '/' in value:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            _fail(where, value, 'not a CIDR (a URL? give the host alone and its port)')
        if network.prefixlen == 0:
            _fail(where, value, 'a default route would allow everything')
        return str(network)
    return value


def _port(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        _fail(where, value, 'expected a port number from 1 to 65535')
    return value


def _protocol(value, where):
    value = 'tcp' if value is None else value
    if value not in ('tcp', 'udp'):
        _fail(where, value, 'expected tcp or udp')
    return value


def _items(values, where, keys):
    """(where[i], item) for a list option of dicts with exactly ``keys`` (the last one, protocol, tcp by default)."""
    if values is None:
        return
    if not isinstance(values, (list, tuple)):
        _fail(where, values, 'expected a list of {%s}' % ', '.join(keys))
    for position, item in enumerate(values):
        here = '%s[%d]' % (where, position)
        if not isinstance(item, dict):
            _fail(here, item, 'expected a dict with %s and %s (tcp by default)' % (', '.join(keys[:-1]), keys[-1]))
        unknown = sorted(set(item) - set(keys))
        if unknown:
            _fail(here, item, 'unknown key(s) %s' % ', '.join(unknown))
        yield here, item


def check_origins(values, where='origins'):
    """The ``origins`` option -> tuple of Origin; OriginError naming the item."""
    result = []
    for here, item in _items(values, where, ('host', 'port', 'protocol')):
        result.append(Origin(_host(item.get('host'), here + '.host'), _port(item.get('port'), here + '.port'),
                             _protocol(item.get('protocol'), here + '.protocol'), 'variable ' + here))
    return tuple(result)


def check_private_networks(values, where='private_networks'):
    """The ``private_networks`` option -> tuple of Origin (one per network and port)."""
    result = []
    for here, item in _items(values, where, ('network', 'ports', 'protocol')):
        network = item.get('network')
        try:
            text = str(ipaddress.ip_network(network, strict=True)) if isinstance(network, str) else None
        except ValueError as error:
            _fail(here + '.network', network, str(error))
        if text is None or text.endswith('/0'):
            _fail(here + '.network', network, 'expected a CIDR (a default route would allow everything)')
        ports = item.get('ports')
        if not isinstance(ports, (list, tuple)) or not ports:
            _fail(here + '.ports', ports, 'expected a list of ports (every port of a network is not expressible as '
                                          'one rule per port; list the services you route)')
        protocol = _protocol(item.get('protocol'), here + '.protocol')
        for index, port in enumerate(ports):
            result.append(Origin(text, _port(port, '%s.ports[%d]' % (here, index)), protocol, 'variable ' + here))
    return tuple(result)


def check_config_setting(value, where='cloudflared_config'):
    """``auto`` (default), ``none`` or an absolute path."""
    value = 'auto' if value is None else value
    if value in CONFIG_SETTINGS:
        return value
    if not isinstance(value, str) or not value.startswith('/') or any(ord(c) < 32 or ord(c) == 127 for c in value):
        _fail(where, value, 'expected auto, none or the absolute path of cloudflared\'s config file')
    return value


# ----------------------------------------------------------------------------------------------------------------
# the host: config and resolver
# ----------------------------------------------------------------------------------------------------------------
def read_config(setting, read_text, exists, home_of):
    """(config report, [Origin], notes) for ``setting``; OriginError naming file and rule when it cannot be used."""
    if setting == 'none':
        return {'setting': 'none', 'path': None, 'how': 'not read (cloudflared_config=none)', 'token': False}, [], []
    if setting == 'auto':
        found = cloudflared_config.find(read_text, exists, home_of)
    else:
        found = {'path': setting, 'how': 'cloudflared_config', 'token': False, 'unit': None}
    report = dict(found, setting=setting, rules=0, warp_routing=False)
    notes = ['%s sets %s: cloudflared reaches its HTTP origins through that proxy (http.ProxyFromEnvironment); allow '
             'the proxy in extra_allow' % (found['unit'], proxy) for proxy in found.get('proxies') or []]
    if found['path'] is None:
        if found['token']:
            notes.append('cloudflared runs with a token (%s): a remotely-managed tunnel keeps its ingress in the '
                         'dashboard, not in a local file; list its origins in origins' % found['unit'])
        return report, [], notes
    text = read_text(found['path'])
    if text is None:
        raise OriginError('cloudflared_config: cannot read %s (%s); give its path, or cloudflared_config=none and '
                          'the origins in origins' % (found['path'], found['how']))
    try:
        document = cloudflared_config.load(text, found['path'])
        mapped = cloudflared_config.destinations(document, found['path'])
    except cloudflared_config.ConfigError as error:
        raise OriginError('cloudflared_config: %s. Nothing was changed.' % error)
    report.update(rules=mapped['rules'], warp_routing=mapped['warp_routing'])
    notes.extend(mapped['notes'])
    if found['token'] and not mapped['rules']:
        notes.append('cloudflared runs with a token (%s): its ingress is in the dashboard; list its origins in origins'
                     % found['unit'])
    origins = [Origin(item['host'], item['port'], item['protocol'], '%s (%s)' % (item['source'], item['kind']))
               for item in mapped['origins']]
    return report, origins, notes


def resolve(host, protocol, getaddrinfo=socket.getaddrinfo):
    """The addresses of ``host`` (a name, an address or a CIDR) as CIDR texts, with the host's resolver."""
    try:
        return [str(ipaddress.ip_network(host, strict=False))]
    except ValueError:
        pass
    kind = socket.SOCK_STREAM if protocol == 'tcp' else socket.SOCK_DGRAM
    try:
        answers = getaddrinfo(host, None, 0, kind)
    except (socket.gaierror, UnicodeError) as error:
        raise OriginError('cannot resolve %s with this host\'s resolver: %s' % (host, error))
    addresses = []
    for answer in answers:
        address = ipaddress.ip_address(answer[4][0].split('%')[0])
        text = '%s/%d' % (address, address.max_prefixlen)
        if text not in addresses:
            addresses.append(text)
    return addresses


def collect(wanted, getaddrinfo=socket.getaddrinfo, keep_loopback=False):
    """[Origin] -> (rules as the egress plan's dicts, allowed report). Loopback addresses are left out (loopback always
    gets out) unless ``keep_loopback`` (edge_probe: a probe of a loopback origin is harmless and says something)."""
    rules = collections.OrderedDict()
    allowed = []
    for origin in wanted:
        try:
            addresses = resolve(origin.host, origin.protocol, getaddrinfo)
        except OriginError as error:
            raise OriginError('%s: %s. Nothing was changed.' % (origin.source, error))
        kept = [a for a in addresses if keep_loopback or not ipaddress.ip_network(a).network_address.is_loopback]
        allowed.append({'host': origin.host, 'addresses': kept, 'port': origin.port, 'protocol': origin.protocol,
                        'source': origin.source})
        key = (origin.protocol, origin.port)
        rule = rules.setdefault(key, {'purpose': PURPOSE, 'protocol': origin.protocol, 'port': origin.port,
                                      'ipv4': [], 'ipv6': []})
        for address in kept:
            family = 'ipv6' if ':' in address else 'ipv4'
            if address not in rule[family]:
                rule[family].append(address)
    return [r for r in rules.values() if r['ipv4'] or r['ipv6']], allowed


# ----------------------------------------------------------------------------------------------------------------
# the check after the change
# ----------------------------------------------------------------------------------------------------------------
def connect(address, port, timeout=CONNECT_TIMEOUT):
    """'connected', 'refused' (a TCP reset: the origin's, or a reject rule's) or 'blocked: why' (no answer, an ICMP
    error, or the local firewall refusing the packet: EPERM/EACCES)."""
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        return 'connected'
    except socket.timeout:
        return 'blocked: no answer in %gs' % timeout
    except (IOError, OSError) as error:
        if error.errno == errno.ECONNREFUSED:
            return 'refused'
        return 'blocked: %s' % (errno.errorcode.get(error.errno) or error)
    finally:
        sock.close()


def targets(allowed):
    """The (address, port) pairs a connect can check: TCP, single addresses (a network is not one destination)."""
    pairs = []
    for item in allowed:
        if item['protocol'] != 'tcp':
            continue
        for address in item['addresses']:
            network = ipaddress.ip_network(address)
            if network.num_addresses == 1 and (str(network.network_address), item['port']) not in pairs:
                pairs.append((str(network.network_address), item['port']))
    return pairs


def connect_all(pairs, timeout=CONNECT_TIMEOUT, connector=connect):
    """{(address, port): outcome}, all at once (threads: a blocked origin costs ``timeout`` once, not per origin)."""
    outcomes = {}

    def one(pair):
        outcomes[pair] = connector(pair[0], pair[1], timeout)
    threads = [threading.Thread(target=one, args=(pair,)) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def judge(before, after):
    """(ok, state, verdict) for one destination from its connect outcome before the change (None: not taken) and after.

    Our default deny rejects TCP with a reset, which a connect cannot tell from the origin's own refusal, so the
    outcome before the change decides: refused after but connected before = the change blocks it. Refused before and
    after = the origin refuses (or something before this change did); the rules allow it. No answer / an ICMP error
    after = blocked, unless it was the same before the change (the origin is down or unroutable, not firewalled here).
    state: reachable, refused, unreachable (the same before the change) or blocked.
    """
    if after == 'connected':
        return True, 'reachable', 'reachable'
    if after == 'refused':
        if before == 'connected':
            return False, 'blocked', 'blocked: connected before the change, refused (a TCP reset) after it'
        return True, 'refused', 'refused by the origin (refused before the change too); allowed by the rules'
    if before is not None and before.startswith('blocked'):
        return True, 'unreachable', ('unreachable before the change too (%s); not a firewall question of this change'
                                     % after)
    return False, 'blocked', after


def probe_rows(allowed, outcomes):
    """edge_probe's ``origins``: one connect, no change to compare with - a refusal is the origin's or a firewall's."""
    rows = []
    for item in allowed:
        for address in item['addresses']:
            network = ipaddress.ip_network(address)
            pair = (str(network.network_address), item['port'])
            if item['protocol'] != 'tcp' or network.num_addresses != 1:
                rows.append(dict(item_row(item, address), checked=False, state='not checked',
                                 verdict='not checked: %s' % ('UDP' if item['protocol'] != 'tcp' else 'a network')))
                continue
            outcome = outcomes.get(pair, 'blocked: not checked')
            state = {'connected': 'reachable', 'refused': 'refused'}.get(outcome, 'blocked')
            verdict = {'reachable': 'reachable',
                       'refused': "refused: the origin's own refusal or a firewall's TCP reset (one connect cannot "
                                  'tell them apart)'}.get(state, outcome)
            rows.append(dict(item_row(item, address), checked=True, ok=state != 'blocked', state=state,
                             verdict=verdict))
    return rows


def check(allowed, before, after):
    """The verification's ``origins`` part: (ok, [{host, address, port, protocol, source, verdict}], unmet lines)."""
    rows, unmet = [], []
    for item in allowed:
        if item['protocol'] == 'udp':
            for address in item['addresses']:
                rows.append(dict(item_row(item, address), checked=False, state='not checked',
                                 verdict='not checked: a UDP datagram gets no answer that proves it passed; the '
                                         'allow rule is in place'))
            continue
        for address in item['addresses']:
            network = ipaddress.ip_network(address)
            if network.num_addresses != 1:
                rows.append(dict(item_row(item, address), checked=False, state='not checked',
                                 verdict='not checked: a network, not one destination; the allow rule is in place'))
                continue
            pair = (str(network.network_address), item['port'])
            ok, state, verdict = judge(before.get(pair), after.get(pair, 'blocked: not checked'))
            rows.append(dict(item_row(item, address), checked=True, ok=ok, state=state, verdict=verdict))
            if not ok:
                unmet.append('origins: %s port %d (%s, %s): %s' % (pair[0], pair[1], item['host'], item['source'], verdict))
    return not unmet, rows, unmet


def item_row(item, address):
    return {'host': item['host'], 'address': address, 'port': item['port'], 'protocol': item['protocol'],
            'source': item['source']}


class OriginCheck(object):
    """The verify() hook for egress_transaction: ``before_change()`` takes the baseline, ``__call__`` checks after.

    Wraps the probe's verify (or None): its output gets an ``origins`` list and its unmet requirements the origins'.
    Without a probe the output stays None (the module's ``verification`` is the probe's result or nothing); the rows
    go into ``report['verification']`` either way (the module's ``origins`` result).
    """

    def __init__(self, allowed, probe_verify=None, timeout=CONNECT_TIMEOUT, connector=connect, report=None):
        self.allowed = allowed
        self.probe_verify = probe_verify
        self.timeout = timeout
        self.connector = connector
        self.report = report if report is not None else {}
        self.before = None

    def before_change(self):
        self.before = connect_all(targets(self.allowed), self.timeout, self.connector)

    def __call__(self):
        """(ok, output, message) like the probe's verify. Without before_change (this run changed nothing) the
        firewall was the same before: each outcome is its own baseline, so only a change can fail an origin."""
        ok, output, message = self.probe_verify() if self.probe_verify else (True, None, '')
        after = connect_all(targets(self.allowed), self.timeout, self.connector)
        origins_ok, rows, unmet = check(self.allowed, after if self.before is None else self.before, after)
        self.report['verification'] = rows
        if output is not None:
            output = dict(output, origins=rows,
                          unmet_requirements=list(output.get('unmet_requirements') or []) + unmet)
        return ok and origins_ok, output, ' | '.join([m for m in [message] + unmet if m])
