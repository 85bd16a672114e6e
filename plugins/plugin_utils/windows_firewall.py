# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's half of win_firewall_egress: the request, the Windows rules wanted, and the transaction.

Validation is egress_request's, the same as the Linux modules' (one message for one bad request); the rule set is
computed here, in Python the tests run; the PowerShell module only reads the group's rules, records them, arms and
disarms the dead-man scheduled task, applies and restores - and, read-only, reads cloudflared's config and resolves
origin names (``origins`` step), and connects to the origins after the change (``connect`` step: raw Winsock codes,
judged here by origins.judge, OriginCheck). Windows rewrites addresses (``198.51.100.7/32`` comes back
as ``198.51.100.7``, ``/24`` as ``198.51.100.0/255.255.255.0``): the desired addresses are sent in canonical CIDR
form and the module brings what Windows returns to the same form before comparing.

The transaction spans several module runs (apply, win_edge_probe, confirm or restore) because the QUIC datagrams
are built here; what keeps a dead controller from leaving an unverified change is on the host: the previous state
is recorded there and a one-shot scheduled task restores it after ``confirm_timeout`` seconds unless the
confirmation removes it first. ``run`` drives the calls through an ``execute(module, args)`` callable, so the whole
sequence is unit-tested without a host.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import uuid

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    cloudflared_config, egress_applied, egress_request, origins, probe_run)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.probe_options import validate_probe_params
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_probe

MODULE = 'tunnelwall.cloudflared.win_firewall_egress'
PROBE_MODULE = 'tunnelwall.cloudflared.win_edge_probe'
PROFILES = ('Domain', 'Private', 'Public')
# The rule group is NAME plus this suffix: the role always wrote "NAME cloudflared", so hosts keep their group.
GROUP_SUFFIX = ' cloudflared'
# Where the dead-man scheduled tasks live (Task Scheduler folder); one per pending change, named after its id.
TASK_PATH = '\\tunnelwall\\'
TASK_PREFIX = 'egress revert '
# How often a run waits for another run's pending change to be confirmed (the host-wide lock).
LOCK_POLL = 3.0
# The ownership marker: the description of every rule the module creates (win_firewall_egress.ps1 $marker).
MARKER = 'Managed by tunnelwall.cloudflared'


class RuleError(ValueError):
    """Bad input, with a message naming the option and the value."""


class TransactionFailed(Exception):
    """The transaction failed; ``details`` go into the task's result next to ``msg``."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def canonical_address(text):
    """``198.51.100.7`` / ``198.51.100.7/32`` / ``198.51.100.0/255.255.255.0`` -> ``198.51.100.7/32`` etc."""
    return str(ipaddress.ip_network(str(text).strip(), strict=True))


def _sorted(addresses):
    # Sorted, both families, so the module's comparison with what Windows reads back is stable across runs.
    networks = {ipaddress.ip_network(a) for a in addresses}
    return [str(n) for n in sorted(networks, key=lambda n: (n.version, n))]


def group_name(name):
    """The Windows Firewall rule group of ``name``: NAME plus GROUP_SUFFIX (the group the module owns)."""
    return name + GROUP_SUFFIX


def module_name(name):
    """The ``name`` option as egress_request checks it, and a warning when the old spelling was used.

    Earlier versions took the group itself as the option ("tunnelwall cloudflared"); a space is not a valid name, so that
    spelling is read as the name it was derived from - the same group on the host.
    """
    if isinstance(name, str) and name.endswith(GROUP_SUFFIX) and name != GROUP_SUFFIX.strip():
        short = name[:-len(GROUP_SUFFIX)]
        return short, ('name=%r is the rule group; the option is now the name the group is made from - use name=%r '
                       '(the same group, %r)' % (name, short, name))
    return name, None


def desired_rules(request):
    """One outbound allow rule per (purpose, protocol, port) of the request, with its display name.

    A rule without destinations is left out: on Windows a rule with no remote address allows every address.
    """
    group = group_name(request.name)
    wanted = []
    for rule in request.rules:
        if rule.ipv4 or rule.ipv6:
            wanted.append((rule.purpose, rule.protocol, rule.port, rule.ipv4 + rule.ipv6))
    # DNS as on Linux (egress_request.nameservers), from dns_servers only: Windows has no resolv.conf to read.
    nameservers = egress_request.nameservers(request, (), ())
    if nameservers:
        for protocol in egress_request.DNS_PROTOCOLS:
            wanted.append(('dns', protocol, egress_request.DNS_PORT, nameservers))
    for extra in request.extra_allow:
        wanted.append(('extra', extra.protocol, extra.port, extra.ipv4 + extra.ipv6))
    # DHCP and MLD get no rule here: Windows' own Core Networking rules (DHCP-Out, DHCPV6-Out, Multicast Listener
    # Report/Done ICMPv6-Out) already let them out under a default block, tied to the client service and ICMPv6 types,
    # which is tighter than the remote-port rules this module can write.
    ipv4, ipv6 = egress_request.metadata_destinations(request)
    if ipv4 or ipv6:
        wanted.append(('metadata', 'tcp', egress_request.METADATA_PORT, ipv4 + ipv6))
    merged = {}
    for purpose, protocol, port, addresses in wanted:
        merged.setdefault((purpose, protocol, port), []).extend(addresses)
    return [{'purpose': purpose, 'protocol': protocol, 'port': port, 'addresses': _sorted(merged[(purpose, protocol, port)]),
             'display_name': '%s: %s %s/%d' % (group, purpose, protocol, port)}
            for purpose, protocol, port in sorted(merged)]


def build_request(params):
    """(Request, warning or None) from the action's validated options; RuleError names the option."""
    name, warning = module_name(params.get('name'))
    try:
        # A Windows path (C:\\...) for cloudflared_config: checked here, the rest of the request as on Linux.
        config = origins.check_config_setting(params.get('cloudflared_config'), windows=True)
        request = egress_request.build(dict(params, name=name, cloudflared_config='none'), 'windows')
        request = request._replace(cloudflared_config=config)
    except (egress_request.RequestError, origins.OriginError) as error:
        raise RuleError(str(error))
    if request.allow_dns and not request.dns_servers:
        # Linux reads resolv.conf; Windows has none the controller could read, so the resolvers must be given.
        raise RuleError('allow_dns=True: default_deny on Windows needs dns_servers (the resolvers Windows uses), or '
                        'allow_dns=false if the host needs no DNS')
    unknown = [p for p in params.get('profiles') or () if canonical_profile(p) is None]
    if unknown or not params.get('profiles'):
        raise RuleError('profiles=%r: expected one or more of %s' % (params.get('profiles'), ', '.join(PROFILES)))
    return request, warning


def _no_origins(request):
    return request._replace(origin_report={'allowed': [], 'config': None, 'notes': [], 'warnings': [],
                                           'checked': False})


def origins_args(service=None, read=(), resolve=()):
    """The module's read-only ``origins`` step: the service's registry values, the first of ``read`` that exists
    (its text) and the addresses of ``resolve``, with the host's resolver. Changes nothing (check mode too)."""
    return {'action': 'origins', 'service': service, 'read': list(read), 'resolve': list(resolve)}


def windows_config(service):
    """Where cloudflared's config is, from what the host reported of the Cloudflared service (None: no service):
    (found dict as cloudflared_config.find gives it, candidate paths to read in order)."""
    if not service:
        return {'path': None, 'how': 'no %s service' % cloudflared_config.WINDOWS_SERVICE, 'token': False,
                'unit': None}, []
    unit = 'the %s service' % service.get('name', cloudflared_config.WINDOWS_SERVICE)
    config, token, service_mode = cloudflared_config.windows_service_command(service.get('image_path'))
    found = {'path': None, 'how': None, 'token': token, 'unit': unit}
    if config:
        return dict(found, how='the --config of %s (ImagePath)' % unit), [config]
    candidates = cloudflared_config.windows_candidates(service.get('profile'), service_mode, service.get('cfdpath'),
                                                       service.get('program_files_x86'))
    return dict(found, how="cloudflared's default search for %s (account %s, profile %s)" % (
        unit, service.get('account') or 'LocalSystem', service.get('profile'))), candidates


def _resolver(resolved, unresolved):
    """A getaddrinfo stand-in answering from what the host resolved (origins.collect resolves with it)."""
    def getaddrinfo(host, port, family, kind):
        """socket.getaddrinfo's answer for ``host`` from the host's addresses; socket.gaierror for a name it could not resolve."""
        if host in unresolved or host not in resolved:
            raise socket.gaierror(unresolved.get(host) or 'not resolved on the host')
        return [(socket.AF_INET6 if ':' in a else socket.AF_INET, kind, 0, '', (a, 0)) for a in resolved[host]]
    return getaddrinfo


def discover_origins(request, execute):
    """The request with its origin rules (under a default deny) and its origin_report, the host's way.

    The Windows module reads on the host what the controller must not: the Cloudflared service's ImagePath and
    account profile, cloudflared's config file (its text) and the addresses of the origin names (the host's
    resolver). The config is parsed here by the same code as on Linux (cloudflared_config, origins.config_origins):
    one parser, no YAML in PowerShell. Up to three read-only module calls (service, file, names). RuleError, before
    anything changes, for a config or a name that cannot be used.
    """
    if not request.default_deny or request.state != 'present':
        return _no_origins(request)
    rules, report = discover(list(request.origins), list(request.private_networks), request.cloudflared_config, execute)
    return egress_request.with_origin_rules(request, rules, report)


def _ask(execute, **args):
    """The origins module's answer on the host for ``args`` (origins_args); its failure is a RuleError (nothing changed)."""
    answer = execute(MODULE, {'prepared': origins_args(**args)})
    if answer.get('failed') or answer.get('unreachable'):
        raise RuleError('reading cloudflared\'s origins on the host failed: %s; nothing was changed'
                        % (answer.get('msg') or 'no answer'))
    return answer.get('origins') or {}


def discover(given, private_networks, setting, execute):
    """(origin rules, origins report) for the ``origins`` and ``private_networks`` given (origins.Origin) and
    cloudflared's config as ``setting`` says, read and resolved on the Windows host (see discover_origins)."""
    wanted = list(given) + list(private_networks)
    names = [o.host for o in wanted if not origins.is_address(o.host)]
    needs_host = names or setting != 'none'
    first = _ask(execute, service=cloudflared_config.WINDOWS_SERVICE if setting == 'auto' else None,
                 read=[setting] if setting not in origins.CONFIG_SETTINGS else [], resolve=names) if needs_host else {}
    resolved, unresolved = dict(first.get('resolved') or {}), dict(first.get('unresolved') or {})
    text = None
    if setting == 'none':
        found = {'path': None, 'how': 'not read (cloudflared_config=none)', 'token': False, 'unit': None}
    elif setting != 'auto':
        found = {'path': setting, 'how': 'cloudflared_config', 'token': False, 'unit': None}
        text = (first.get('file') or {}).get('text')
    else:
        found, candidates = windows_config(first.get('service'))
        read = _ask(execute, read=candidates).get('file') if candidates else None
        if read:
            found['path'], text = read.get('path'), read.get('text')
        elif found['how'] and found['how'].startswith('the --config'):
            found['path'] = candidates[0]
        elif candidates:
            found['how'] = 'none found (%s)' % ', '.join(candidates)
    try:
        if setting == 'none':
            config, from_config, notes = {'setting': 'none', 'path': None, 'how': found['how'], 'token': False}, [], []
        else:
            config, from_config, notes = origins.config_origins(found, setting, text)
        more = [o.host for o in from_config if not origins.is_address(o.host) and o.host not in resolved
                and o.host not in unresolved]
        if more:
            answer = _ask(execute, resolve=sorted(set(more)))
            resolved.update(answer.get('resolved') or {})
            unresolved.update(answer.get('unresolved') or {})
        rules, allowed = origins.collect(wanted + from_config, getaddrinfo=_resolver(resolved, unresolved))
    except origins.OriginError as error:
        raise RuleError(str(error))
    warnings = []
    if config.get('warp_routing') and not private_networks:
        warnings.append('%s enables warp-routing but private_networks is empty: private-network traffic through the '
                        'tunnel will be blocked by the default deny' % config['path'])
    if config.get('token') and not given:
        warnings.append('cloudflared runs with a token (remotely-managed tunnel, ingress in the dashboard) and origins '
                        'is empty: its origins will be blocked by the default deny unless listed in origins')
    return rules, {'allowed': allowed, 'config': config, 'notes': notes, 'warnings': warnings, 'checked': False}


# --- the origins' check after the change (origins.check, judged here from the host's raw connects) ----------------

# Winsock error codes (WSAGetLastError, .NET SocketException.ErrorCode) the host's ``connect`` step returns.
WSAEACCES = 10013
WSAECONNREFUSED = 10061
WINSOCK_NAMES = {10013: 'WSAEACCES', 10048: 'WSAEADDRINUSE', 10049: 'WSAEADDRNOTAVAIL', 10050: 'WSAENETDOWN',
                 10051: 'WSAENETUNREACH', 10060: 'WSAETIMEDOUT', 10061: 'WSAECONNREFUSED', 10065: 'WSAEHOSTUNREACH'}
# What tells on Windows whether the SYN left the host (origins.judge's ``evidence``; Linux has connection tracking).
# Windows Firewall's rules are filters of the Windows Filtering Platform's ALE connect layer
# (FWPM_LAYER_ALE_AUTH_CONNECT_V4/V6): a connect is authorized there before TCP sends its SYN, and a block fails the
# connect on the host at once with access denied - WSAEACCES 10013, "An attempt was made to access a socket in a way
# forbidden by its access permissions" (Winsock's text for a connect a firewall rule refuses, see e.g.
# https://geekchamp.com/an-attempt-was-made-to-access-a-socket-in-a-way-forbidden-by-its-access-permissions). It
# never answers a blocked outbound connect with a TCP reset. So: 10013 = this host's firewall (the SYN never left);
# 10061 WSAECONNREFUSED = a reset from beyond the host (the origin is down, the rules let it out). Anything else - no
# answer (10060 or the step's own timeout), host or network unreachable (10065, 10051) - does not say where it
# stopped: another filter on the host (a third-party WFP callout that drops) cannot be told from a silent network, so
# it counts as blocked, as on Linux when connection tracking cannot say. The risk: an origin that is down and does
# not answer at all fails the verification (a false red, never a false green). Not proven on a Windows host here.
WINDOWS_EVIDENCE = {
    'left': "WSAECONNREFUSED: Windows Firewall never answers a connect it blocks with a TCP reset, it fails it with "
            "WSAEACCES",
    'never': 'WSAEACCES: the Windows Filtering Platform refused the connect on this host, before a SYN was sent',
    'unknown': 'on Windows only WSAEACCES and WSAECONNREFUSED say where a connect stopped',
}


def connect_args(pairs, timeout=origins.CONNECT_TIMEOUT):
    """The module's read-only ``connect`` step: a TCP connect to each (address, port), all at once, each bounded by
    ``timeout`` seconds; the host returns what happened, the controller judges (connect_outcome)."""
    return {'action': 'connect', 'targets': [{'address': address, 'port': port} for address, port in pairs],
            'timeout': timeout}


def connect_outcome(row, timeout=origins.CONNECT_TIMEOUT):
    """``(outcome, left)`` as origins.judge takes it, from one row of the ``connect`` step ({address, port,
    connected, error, timed_out, message}): left True for a connection and WSAECONNREFUSED, False for WSAEACCES,
    None (cannot tell: counted blocked) for anything else (WINDOWS_EVIDENCE)."""
    if row.get('connected'):
        return 'connected', True
    code = row.get('error')
    if code == WSAECONNREFUSED:
        return 'refused', True
    if row.get('timed_out'):
        return 'no answer in %gs' % timeout, None
    if code == WSAEACCES:
        return 'WSAEACCES (10013): access denied on this host', False
    if isinstance(code, int) and not isinstance(code, bool):
        return '%s (%d)' % (WINSOCK_NAMES.get(code, 'Winsock error'), code), None
    return 'failed: %s' % (row.get('message') or 'no error code'), None


def connect_origins(pairs, execute, timeout=origins.CONNECT_TIMEOUT):
    """{(address, port): (outcome, left)} from the host's ``connect`` step (one module run); a failed step or a pair
    the host did not answer is ``not checked`` with left None - blocked, nothing proves otherwise."""
    answer = execute(MODULE, {'prepared': connect_args(pairs, timeout)})
    if answer.get('failed') or answer.get('unreachable'):
        why = 'not checked: the connect step failed (%s)' % (answer.get('msg') or 'no answer')
        return dict((pair, (why, None)) for pair in pairs)
    rows = dict(((str(row.get('address')), row.get('port')), row) for row in answer.get('connects') or [])
    unanswered = ('not checked: no answer from the host', None)
    return dict((pair, connect_outcome(rows[pair], timeout) if pair in rows else unanswered) for pair in pairs)


class OriginCheck:
    """The origins' part of the Windows verification (origins.OriginCheck's counterpart): ``pairs`` the host connects
    to; calling it with the probe's ``(ok, output, message)`` adds the origins' rows and unmet lines (origins.verified)
    and puts the rows in the origins report (the task's ``origins.verification``). No baseline before the change:
    on Linux it only adds words to a verdict, here it would cost another module run."""

    def __init__(self, allowed, report, timeout=origins.CONNECT_TIMEOUT):
        self.allowed = allowed
        self.report = report
        self.timeout = timeout
        self.pairs = origins.targets(allowed)

    def __call__(self, execute, probe):
        after = connect_origins(self.pairs, execute, self.timeout) if self.pairs else {}
        return origins.verified(probe, self.allowed, {}, after, self.report, WINDOWS_EVIDENCE)


def must_stay(verify_origins, execute):
    """``verify.origins`` (destinations that must stay reachable, not allowed here) as origins.collect's items, their
    names resolved on the host (the origins step); RuleError naming the item."""
    try:
        extra = origins.check_origins([dict(o, protocol='tcp') for o in verify_origins or []], 'verify.origins')
        names = sorted(set(o.host for o in extra if not origins.is_address(o.host)))
        answer = _ask(execute, resolve=names) if names else {}
        return origins.collect(extra, getaddrinfo=_resolver(dict(answer.get('resolved') or {}),
                                                            dict(answer.get('unresolved') or {})))[1]
    except origins.OriginError as error:
        raise RuleError(str(error))


def origin_check(request, execute, verify_origins=()):
    """The OriginCheck of ``request`` (after discover_origins) and ``verify.origins``, or None when there is nothing to
    check: every allowed origin under a default deny, whether ``verify`` is given or not (as on Linux)."""
    report = request.origin_report
    checked = list(report['allowed']) + must_stay(verify_origins, execute) if request.state == 'present' else []
    report['checked'] = bool(origins.targets(checked))
    return OriginCheck(checked, report) if checked else None


def read_args(name):
    """The module's read-only ``read`` step: the group's rules (egress_firewall_info on Windows)."""
    return {'action': 'read', 'group': group_name(name)}


def _group_rules(rules, name):
    """(purpose, rule, destinations) for each of ``rules`` in NAME's group, the purpose read from its display name
    ``GROUP: PURPOSE PROTOCOL/PORT`` (desired_rules), ``destinations`` its addresses as canonical CIDRs (an address
    that is none is left out). The one reader of the module's rules, for drift and for ``added``/``removed``."""
    prefix = group_name(name) + ': '
    for rule in rules or []:
        title = str(rule.get('display_name') or '')
        if title.startswith(prefix):
            yield title[len(prefix):].split(' ', 1)[0], rule, _canonical_addresses(rule.get('addresses') or [])


def _canonical_addresses(addresses):
    """The canonical CIDR of each valid address in ``addresses``, in order; invalid ones are left out."""
    found = []
    for address in addresses:
        try:
            found.append(canonical_address(address))
        except ValueError:
            continue
    return found


def applied_from_rules(rules, name):
    """What the group's rules allow, by purpose (egress_applied's shape, for plan_drift), from the ``read`` step's
    rules (_group_rules). Rules without this module's marker are left out; a purpose whose rules list addresses, none
    of them valid, is kept with no addresses."""
    found = {}
    for purpose, rule, destinations in _group_rules(rules, name):
        if rule.get('addresses') and rule.get('description') in (None, MARKER):
            found.setdefault(purpose, set()).update(destinations)
    return dict((purpose, sorted(values)) for purpose, values in sorted(found.items()))


def rule_rows(rules, name):
    """The group's rules (the module's ``previous.rules``, or desired_rules) as one row per valid destination, in the
    shape every firewall module returns as ``added``/``removed`` (egress_applied.rule_changes)."""
    rows = []
    for purpose, rule, destinations in _group_rules(rules, name):
        port = rule.get('port')
        rows.extend({'purpose': purpose, 'family': 'ipv6' if ':' in destination else 'ipv4',
                     'protocol': str(rule.get('protocol') or '').lower() or None,
                     'port': int(port) if str(port or '').isdigit() else None, 'destination': destination}
                    for destination in destinations)
    return rows


def with_rule_changes(result, prepared, name):
    """The task's result with ``added``/``removed`` in the one shape of every backend (from the rules before the
    run and the rules it applies); the module's lists of display names stay as ``windows_added``/``windows_removed``."""
    if 'added' not in result and 'removed' not in result:
        return result  # the module did not get as far as comparing (bad input, unreachable)
    before = (result.get('previous') or {}).get('rules') or []
    added, removed = egress_applied.rule_changes(rule_rows(before, name), rule_rows(prepared['rules'], name))
    return dict(result, added=added, removed=removed, windows_added=result.get('added') or [],
                windows_removed=result.get('removed') or [])


def canonical_profile(profile):
    """``Public`` for public, PUBLIC or Public (Windows itself ignores the case); None for anything else."""
    return next((known for known in PROFILES if known.lower() == str(profile).strip().lower()), None)


def prepare(request, profiles):
    """The Windows module's ``prepared`` argument for applying the request (without its transaction part)."""
    return {'group': group_name(request.name), 'rules': desired_rules(request) if request.state == 'present' else [],
            'default_deny': request.default_deny, 'profiles': list(dict.fromkeys(canonical_profile(p) for p in profiles)),
            'state': request.state}


def verify_params(options):
    """The probe's parameters for ``verify`` (win_edge_probe's defaults filled in), or RuleError naming the option.

    ca_path is a path on the Windows host: it is not looked for here (probe_run.check would look on the controller).
    """
    if not options:
        return None
    # 'origins' is the firewall module's own check (OriginCheck), not the probe's - as on Linux (probe_run.verifier).
    params = probe_run.probe_params(dict((k, v) for k, v in options.items() if k != 'origins'))
    params['require'] = [r for r in params['require'] if r != 'origins']
    problem = validate_probe_params(params)
    if problem:
        raise RuleError('verify.%s' % problem)
    return params


def new_id():
    """A fresh transaction id: 12 random hex digits (it names the scheduled task too)."""
    return uuid.uuid4().hex[:12]


def transaction_args(request, txid, verifying):
    """What the module needs to record, arm and confirm: the id, the scheduled task and whether to wait for a verdict.

    ``verify`` false: nothing will probe after the apply, so the module confirms at once (one module run).
    """
    return {'id': txid, 'confirm_timeout': request.confirm_timeout, 'task_path': TASK_PATH, 'task_name': TASK_PREFIX + txid,
            'verify': bool(verifying)}


def apply_args(prepared, request, txid, verifying):
    """The module arguments of the apply call: the prepared rules and the transaction to record and arm."""
    return dict(prepared, action='apply', transaction=transaction_args(request, txid, verifying))


def finish_args(prepared, request, txid, action):
    """``confirm`` (remove the record and the scheduled task) or ``restore`` (put the record back, then the same)."""
    return {'group': prepared['group'], 'profiles': prepared['profiles'], 'state': prepared['state'], 'rules': [],
            'default_deny': False, 'action': action, 'transaction': transaction_args(request, txid, False)}


def restore_summary(record):
    """What a restore of ``record`` (``previous``: the state the module recorded before applying) puts back."""
    if not record:
        return 'nothing to restore'
    rules = record.get('rules') or []
    actions = record.get('outbound') or {}
    return 'the %d rule(s) of group %r as before and the default outbound action%s %s' % (
        len(rules), record.get('group'), '' if len(actions) == 1 else 's',
        ', '.join('%s=%s' % (profile, actions[profile]) for profile in sorted(actions)) or '(unchanged)')


def busy_message(busy, waited):
    """Why nothing changed when another change holds the host-wide lock: whose it is and how long this one waited."""
    text = ('another egress change holds the host-wide lock: change %s of group %r, started %s, unconfirmed until %s; '
            'waited %ds (lock_timeout) and changed nothing')
    return text % (busy.get('id'), busy.get('group'), busy.get('started'), busy.get('expires'), waited)


def verify_output(params, execute):
    """(ok, the probe's output, the unmet requirements as one line) from win_edge_probe's module."""
    prepared = windows_probe.prepare(params)
    raw = execute(PROBE_MODULE, {'prepared': prepared})
    if raw.get('failed') or raw.get('unreachable'):
        message = raw.get('msg') or 'the probe failed'
        return False, dict(raw, unmet_requirements=[message]), message
    output = windows_probe.report(params, prepared, raw)
    unmet = output['unmet_requirements']
    return not unmet, output, ' | '.join(unmet)


def run(request, prepared, probe_params, execute, check_mode=False, sleep=time.sleep, clock=time.monotonic, make_id=new_id,
        origin_check=None):
    """The whole transaction; returns the task's result or raises TransactionFailed.

    1. apply: the module settles a change a dead run left (its deadline passed), reads the group's rules and the
       default outbound actions, records them in the registry, arms the scheduled task, applies - and, when nothing
       will verify, confirms at once. Another run's live pending change makes it answer ``busy``: wait, up to
       ``lock_timeout``, and try again.
    2. verify with win_edge_probe and ``origin_check`` (OriginCheck: the module's read-only ``connect`` step to every
       TCP origin) - with no change too, where a failure changes nothing;
    3. confirm (remove the record and the task), or restore the record and fail.

    The result and every failure carry ``module`` (MODULE) - except a failed apply the module did not report itself
    (an unhandled exception, a lost connection): the firewall is then not known to be as before.
    """
    txid = make_id()
    checking = origin_check is not None and bool(origin_check.pairs)
    verifying = (probe_params is not None or checking) and not check_mode and request.state == 'present'
    args = apply_args(prepared, request, txid, verifying)
    started = clock()
    waited = False
    while True:
        result = execute(MODULE, {'prepared': args})
        if result.get('failed') or result.get('unreachable'):
            # The module's own failure carries ``module``; a crash or a lost connection does not, and neither does this.
            raise TransactionFailed(result.get('msg') or 'apply failed', **_carry(result))
        if not result.get('busy'):
            break
        if clock() - started >= request.lock_timeout:
            raise TransactionFailed(busy_message(result['busy'], request.lock_timeout), module=MODULE,
                                    changed=False, transaction={'id': txid, 'waited_for_lock': True})
        waited = True
        sleep(LOCK_POLL)
    info = dict(result.get('transaction') or {}, id=txid, confirm_timeout=request.confirm_timeout, waited_for_lock=waited,
                restored=False)
    info.setdefault('armed', None)
    info.setdefault('settled', None)
    result = dict(result, transaction=info, verification=None, module=MODULE)  # in every failure below too
    if not verifying:
        return result  # the module confirmed at once (transaction.confirmed), or changed nothing
    ok, output, message = verify_output(probe_params, execute) if probe_params is not None else (True, None, '')
    if origin_check is not None:
        ok, output, message = origin_check(execute, (ok, output, message))
    result['verification'] = output
    if not result.get('changed'):
        if ok:
            return result
        raise TransactionFailed('verification failed - %s. Nothing was changed by this run.'
                                % message, **dict(result, changed=False))
    if ok:
        confirmed = execute(MODULE, {'prepared': finish_args(prepared, request, txid, 'confirm')})
        if confirmed.get('failed') or confirmed.get('unreachable'):
            # The change stays until the scheduled task restores it: rolled_back=False, so nobody says "as before".
            raise TransactionFailed('verified, but the confirmation failed (%s); %s' % (
                confirmed.get('msg') or 'no answer', _left_to_deadman(info)), **dict(result, rolled_back=False))
        if not confirmed.get('confirmed'):
            raise TransactionFailed('verified, but not confirmed - %s' % (
                confirmed.get('message') or 'the change was no longer pending'), **dict(result, rolled_back=True))
        info['confirmed'] = True
        return result
    restored = execute(MODULE, {'prepared': finish_args(prepared, request, txid, 'restore')})
    # rolled_back says whether the host is back at the recorded state, by this run or by its scheduled task.
    rolled_back = False
    if restored.get('failed') or restored.get('unreachable'):
        outcome = 'ROLLBACK FAILED (%s); %s' % (restored.get('msg') or 'the restore failed', _left_to_deadman(info))
    elif not restored.get('restored'):
        rolled_back = True
        outcome = 'nothing by this run - %s' % (restored.get('message') or 'no change of this run was pending')
    else:
        rolled_back = info['restored'] = True
        outcome = restore_summary(result.get('previous'))
    raise TransactionFailed('verification failed after applying the rules - %s. Rolled back: %s.'
                            % (message, outcome), **dict(result, rolled_back=rolled_back))


def _left_to_deadman(info):
    armed = info.get('armed')
    if armed:
        return 'the scheduled task %s%s restores the previous state at %s' % (
            armed.get('task_path'), armed.get('task_name'), armed.get('at'))
    return 'no dead-man revert was armed (confirm_timeout=0): the change stays until the next run'


def _carry(result):
    """What a failed module result says besides its message (diff, record, transaction)."""
    return dict((key, value) for key, value in result.items() if key not in ('failed', 'msg', 'exception'))
