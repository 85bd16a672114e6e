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

``OriginCheck`` proves from the host, after the change, that every TCP origin is allowed by the firewall: a TCP
connect to each address and port, and connection tracking to tell an origin's own refusal (its SYN left this host)
from a TCP reset made here by a reject rule (conntrack.py; ``judge``). UDP origins and networks are not checked.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import ipaddress
import re
import socket
import threading

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import cloudflared_config, conntrack, egress_contract

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
    if value not in egress_contract.PROTOCOLS:
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


WINDOWS_ABSOLUTE = re.compile(r'([A-Za-z]:\\|\\\\[^\\])')


def check_config_setting(value, where='cloudflared_config', windows=False):
    """``auto`` (default), ``none`` or an absolute path (on Windows ``C:\\...`` or ``\\\\server\\share\\...``)."""
    value = 'auto' if value is None else value
    if value in CONFIG_SETTINGS:
        return value
    absolute = isinstance(value, str) and (WINDOWS_ABSOLUTE.match(value) if windows else value.startswith('/'))
    if not absolute or any(ord(c) < 32 or ord(c) == 127 for c in value):
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
    return config_origins(found, setting, read_text(found['path']) if found['path'] is not None else None)


def config_origins(found, setting, text):
    """(config report, [Origin], notes) from where the config was found (cloudflared_config.find's dict, or the
    Windows equivalent) and its ``text`` (None: not readable); OriginError naming file and rule."""
    report = dict(found, setting=setting, rules=0, warp_routing=False)
    notes = ['%s sets %s: cloudflared reaches its HTTP origins through that proxy (http.ProxyFromEnvironment); allow '
             'the proxy in extra_allow' % (found['unit'], proxy) for proxy in found.get('proxies') or []]
    if found['path'] is None:
        if found['token']:
            notes.append('cloudflared runs with a token (%s): a remotely-managed tunnel keeps its ingress in the '
                         'dashboard, not in a local file; list its origins in origins' % found['unit'])
        return report, [], notes
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


def is_address(host):
    """An address or a CIDR (nothing to resolve), not a name."""
    try:
        ipaddress.ip_network(host, strict=False)
        return True
    except ValueError:
        return False


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
    """(outcome, source address, source port): 'connected', 'refused' (a TCP reset: the origin's, or a reject rule's)
    or 'blocked: why' (no answer, an ICMP error, or the local firewall refusing the packet: EPERM/EACCES). The socket
    is bound to the source the route gives, so that conntrack.Watch can find the SYN by its tuple."""
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    source = conntrack.source_for(family, address, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    source_port = None
    try:
        if source is not None:
            try:
                sock.bind((source, 0))
                source_port = sock.getsockname()[1]
            except (IOError, OSError):
                source = None
        sock.connect((address, port))
        return 'connected', source, source_port
    except socket.timeout:
        return 'blocked: no answer in %gs' % timeout, source, source_port
    except (IOError, OSError) as error:
        if error.errno == errno.ECONNREFUSED:
            return 'refused', source, source_port
        return 'blocked: %s' % (errno.errorcode.get(error.errno) or error), source, source_port
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


def _family(address):
    return socket.AF_INET6 if ':' in address else socket.AF_INET


def connect_all(pairs, timeout=CONNECT_TIMEOUT, connector=connect, watch=None):
    """{(address, port): (outcome, left)}, all at once (threads: a blocked origin costs ``timeout`` once, not per
    origin). ``left``: whether the SYN left this host (conntrack.Watch: True, False, None = cannot tell); True for a
    connection. ``connector`` may return the outcome alone (then left is None)."""
    raw = {}

    def one(pair):
        """Connect to one (address, port) pair; its outcome into ``raw`` (runs in a thread of its own)."""
        raw[pair] = connector(pair[0], pair[1], timeout)
    watch = (watch or conntrack.Watch()).start() if pairs else None
    try:
        for family in sorted(set(_family(pair[0]) for pair in pairs)):
            watch.control(family)
        threads = [threading.Thread(target=one, args=(pair,)) for pair in pairs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes = {}
        for pair, value in raw.items():
            outcome, source, source_port = value if isinstance(value, tuple) else (value, None, None)
            left = True if outcome == 'connected' else (
                watch.left(_family(pair[0]), source, source_port, pair[0], pair[1]) if source_port else None)
            outcomes[pair] = (outcome, left)
        return outcomes
    finally:
        if watch is not None:
            watch.close()


def _split(value):
    """(outcome, left) from connect_all's value, or from an outcome alone (left unknown)."""
    if isinstance(value, tuple):
        return value
    return value, (True if value == 'connected' else None)


# How a verdict says what told the SYN's fate (judge): on Linux connection tracking (conntrack.Watch); on Windows the
# connect's Winsock error (plugin_utils/windows_firewall.py WINDOWS_EVIDENCE).
CONNTRACK_EVIDENCE = {
    'left': 'connection tracking saw it',
    'never': 'connection tracking saw no connection',
    'unknown': 'connection tracking could not say whether the SYN left',
}


def judge(before, after, evidence=None):
    """(ok, state, verdict) for one destination the new rules allow, from its connect after the change (and before
    it, None: not taken) - each ``(outcome, left)`` or an outcome alone.

    Our default deny rejects TCP with a reset made on this host, which a connect cannot tell from the origin's own
    refusal; connection tracking can (conntrack.Watch: did the SYN leave this host?). So after the change:

    - connected: reachable;
    - the SYN left this host (refused by the origin, or unanswered beyond the host): the rules let it out - ok
      (refused: the origin is down; unreachable: not this host's firewall);
    - the SYN never left: this host stopped it - blocked, whatever it was before the change (an earlier deny that
      still stops an origin the new rules allow fails too);
    - cannot tell (conntrack unreadable or not tracking here): blocked - nothing proves it is not this host's
      firewall.

    state: reachable, refused, unreachable or blocked. ``evidence``: the words for what told whether the SYN left
    (CONNTRACK_EVIDENCE by default; Windows gives its own, the same judgement from the connect's error code).
    """
    said_by = evidence or CONNTRACK_EVIDENCE
    outcome, left = _split(after)
    earlier = _split(before)[0] if before is not None else None
    if outcome == 'connected':
        return True, 'reachable', 'reachable'
    if left is True:
        if outcome == 'refused':
            return True, 'refused', ('refused by the origin: the SYN left this host (%s) and a TCP reset came back; '
                                     'the rules allow it' % said_by['left'])
        return True, 'unreachable', ("unreachable (%s), but the SYN left this host (%s): not this host's firewall"
                                     % (outcome, said_by['left']))
    what = 'refused by this host itself (a TCP reset made here: a reject rule)' if outcome == 'refused' else outcome
    if left is False:
        verdict = 'blocked: %s - the SYN never left this host (%s)' % (what, said_by['never'])
    else:
        said = "refused (a TCP reset: the origin's or a reject rule's)" if outcome == 'refused' else outcome
        verdict = "blocked: %s - nothing proves it is not this host's firewall (%s)" % (said, said_by['unknown'])
    if earlier == 'connected':
        verdict += '; it connected before the change'
    elif earlier is not None:
        verdict += '; the same before the change (%s)' % earlier
    return False, 'blocked', verdict


def probe_rows(allowed, outcomes):
    """edge_probe's ``origins``: one connect each, no change to compare with; a refusal is the origin's when the SYN
    left this host (connection tracking), this host's when it did not, and either when that cannot be read."""
    rows = []
    for item in allowed:
        for address in item['addresses']:
            network = ipaddress.ip_network(address)
            pair = (str(network.network_address), item['port'])
            if item['protocol'] != 'tcp' or network.num_addresses != 1:
                rows.append(dict(item_row(item, address), checked=False, state='not checked',
                                 verdict='not checked: %s' % ('UDP' if item['protocol'] != 'tcp' else 'a network')))
                continue
            outcome, left = _split(outcomes.get(pair, 'blocked: not checked'))
            state = {'connected': 'reachable', 'refused': 'refused'}.get(outcome, 'blocked')
            if state == 'refused' and left is False:
                state, verdict = 'blocked', ('blocked: refused by this host itself (a TCP reset made here: a reject '
                                             'rule); the SYN never left it')
            elif state == 'refused' and left is True:
                verdict = 'refused by the origin (the SYN left this host): the origin is down, not blocked here'
            else:
                verdict = {'reachable': 'reachable',
                           'refused': "refused: the origin's own refusal or a firewall's TCP reset (one connect cannot "
                                      'tell them apart here)'}.get(state, outcome)
            rows.append(dict(item_row(item, address), checked=True, ok=state != 'blocked', state=state,
                             verdict=verdict))
    return rows


def check(allowed, before, after, evidence=None):
    """The verification's ``origins`` part: (ok, [{host, address, port, protocol, source, verdict}], unmet lines);
    ``evidence`` as judge takes it."""
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
            ok, state, verdict = judge(before.get(pair), after.get(pair, 'blocked: not checked'), evidence)
            rows.append(dict(item_row(item, address), checked=True, ok=ok, state=state, verdict=verdict))
            if not ok:
                unmet.append('origins: %s port %d (%s, %s): %s' % (pair[0], pair[1], item['host'], item['source'], verdict))
    return not unmet, rows, unmet


def item_row(item, address):
    """The columns of an origin's row in the probe's ``origins`` list that its item and one address give."""
    return {'host': item['host'], 'address': address, 'port': item['port'], 'protocol': item['protocol'],
            'source': item['source']}


class OriginCheck(object):
    """The verify() hook for egress_transaction: ``before_change()`` takes the baseline, ``__call__`` checks after.

    Wraps the probe's verify (or None): its output gets an ``origins`` list and its unmet requirements the origins'.
    Without a probe the output stays None (the module's ``verification`` is the probe's result or nothing); the rows
    go into ``report['verification']`` either way (the module's ``origins`` result).
    """

    def __init__(self, allowed, probe_verify=None, timeout=CONNECT_TIMEOUT, connector=connect, report=None,
                 watch=None):
        self.allowed = allowed
        self.probe_verify = probe_verify
        self.timeout = timeout
        self.connector = connector
        self.watch = watch
        self.report = report if report is not None else {}
        self.before = None

    def _connect_all(self):
        return connect_all(targets(self.allowed), self.timeout, self.connector, self.watch)

    def before_change(self):
        """Each origin's connect before the change: not the verdict (judge), but said in it when it differs."""
        self.before = self._connect_all()

    def __call__(self):
        """(ok, output, message) like the probe's verify: every origin the rules allow must connect, or be refused
        or unanswered beyond this host (its SYN left it); whether this run changed anything or not."""
        probe = self.probe_verify() if self.probe_verify else (True, None, '')
        return verified(probe, self.allowed, self.before or {}, self._connect_all(), self.report)


def verified(probe, allowed, before, after, report, evidence=None):
    """The probe's ``(ok, output, message)`` with the origins' check added (check): the output gets an ``origins``
    list and the origins' unmet requirements, ``report['verification']`` the rows (also without a probe: output
    None). The one merge of Linux (OriginCheck) and Windows (windows_firewall.OriginCheck)."""
    ok, output, message = probe
    origins_ok, rows, unmet = check(allowed, before, after, evidence)
    report['verification'] = rows
    if output is not None:
        output = dict(output, origins=rows, unmet_requirements=list(output.get('unmet_requirements') or []) + unmet)
    return ok and origins_ok, output, ' | '.join([m for m in [message] + unmet if m])
