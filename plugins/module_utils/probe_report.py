# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""From probe results to what a user acts on: DNS drift, a summary, a protocol, and what to open.

Pure functions of plain data: the POSIX module and the Windows action
plugin share them, so both report the same way.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import dns_client, egress_contract, reachability

ADDRESS_TYPES = {'ipv4': 'A', 'ipv6': 'AAAA'}
# An unmet requirement's message (unmet_message) ends with what to open, after this mark, separated like this.
FIX_MARK = '. To fix: '
FIX_SEPARATOR = '; '


# TXT questions cloudflared 2026 asks through the host's resolver, besides SRV and A/AAAA (asked even when a plan
# has no ``dns_names``, as plans made before it): cfd-features.argotunnel.com (features/selector.go: datagram
# version, the pre-checks kill switch; at start and hourly) and protocol-v2.argotunnel.com (connection/protocol.go:
# the QUIC rollout percentage; at every start, hourly with --protocol auto and no --token). Either may be absent
# (NXDOMAIN, no TXT) - cloudflared then uses its defaults - but a question that gets no answer at all (a timeout,
# REFUSED, SERVFAIL) is a resolver that filters by name: a finding.
TXT_QUESTIONS = (('cfd-features.argotunnel.com', 'TXT'), ('protocol-v2.argotunnel.com', 'TXT'))


def dns_questions(plan, families):
    """The questions cloudflared's host asks: the SRV names, A/AAAA of every host name and of the plan's
    ``dns_names`` (region1.v2.argotunnel.com, whatever the region), and cloudflared's TXT names; each once."""
    questions = [(name, 'SRV') for name in plan.get('srv_names') or []]
    for endpoint in plan['endpoints']:
        questions.extend((endpoint['hostname'], ADDRESS_TYPES[family]) for family in families)
    for entry in plan.get('dns_names') or []:
        questions.extend((entry['name'], rdtype) for rdtype in entry['types']
                         if rdtype == 'TXT' or rdtype in (ADDRESS_TYPES[family] for family in families))
    questions += list(TXT_QUESTIONS)
    unique = []
    for question in questions:
        if question not in unique:
            unique.append(question)
    return unique


def probe_work(params, families):
    """``(targets, dns questions)`` of a probe run: from the plan, or the explicit targets (no DNS then)."""
    plan = params['plan']
    checks = params['checks'] or list(reachability.CHECKS)
    if not plan:
        return reachability.explicit_targets(params['targets']), []
    targets = reachability.plan_targets(plan, checks, params['purposes'], families, params['server_names'])
    return targets, dns_questions(plan, families) if 'dns' in checks else []


def resolve_all(questions, nameservers, timeout):
    """Every question at once, through the host's own nameservers."""
    if not questions:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(questions))) as pool:
        return list(pool.map(lambda q: dns_client.resolve(q[0], q[1], nameservers, timeout), questions))


def dns_findings(plan, families, nameservers, answers):
    """What the host's DNS says that the plan does not, and the reverse.

    A host that cannot resolve is a finding, not an error: cloudflared on
    it would fail the same way.
    """
    findings = []
    if not nameservers:
        findings.append({'kind': 'no_resolver', 'message': 'no nameserver in resolv.conf: cloudflared cannot resolve its edge'})
    by_question = dict(((a['name'], a['type']), a) for a in answers)
    planned_hosts = set(e['hostname'] for e in plan['endpoints'])
    for answer in answers:
        if answer['type'] == 'TXT':
            answer['state'] = dns_client.answer_state(answer)
            if answer['state'] == 'blocked' and nameservers:
                findings.append({'kind': 'txt_blocked', 'name': answer['name'], 'type': 'TXT',
                                 'error_kind': answer['error_kind'],
                                 'message': 'TXT %s (asked by cloudflared) got no answer through this host\'s resolver: '
                                            '%s' % (answer['name'], answer['message'])})
            continue
        if not answer['ok'] and nameservers:
            findings.append({'kind': 'unresolvable', 'name': answer['name'], 'type': answer['type'],
                             'error_kind': answer['error_kind'], 'message': answer['message']})
        if answer['type'] == 'SRV' and answer['ok']:
            for target in sorted(set(t[3] for t in answer['answers']) - planned_hosts):
                findings.append({'kind': 'srv_target_not_in_plan', 'name': answer['name'], 'hostname': target,
                                 'message': '%s names %s, which the plan lacks' % (answer['name'], target)})
    for endpoint in plan['endpoints']:
        for family in families:
            answer = by_question.get((endpoint['hostname'], ADDRESS_TYPES[family]))
            if not answer or not answer['ok']:
                continue
            seen, planned = set(answer['answers']), set(endpoint.get(family) or [])
            for kind, addresses in (('not_in_plan', seen - planned), ('not_seen', planned - seen)):
                if addresses:
                    findings.append({
                        'kind': kind, 'hostname': endpoint['hostname'], 'family': family,
                        'addresses': sorted(addresses),
                        'message': ('this host resolves %s to %s, which the plan lacks' if kind == 'not_in_plan'
                                    else 'the plan has %s at %s, which this host does not see')
                        % (endpoint['hostname'], ', '.join(sorted(addresses)))})
    return findings


def summarize(results):
    """Counts per purpose, check, protocol and family, in a stable order."""
    groups = {}
    for result in results:
        key = (result['purpose'], result['check'], result['protocol'], result['family'])
        group = groups.setdefault(key, {'purpose': key[0], 'check': key[1], 'protocol': key[2], 'family': key[3],
                                        'ok': 0, 'failed': 0, 'total': 0})
        group['ok' if result['ok'] else 'failed'] += 1
        group['total'] += 1
    return [groups[key] for key in sorted(groups)]


def _tunnel_hosts(results, check):
    """{hostname: (ok count, total)} for one tunnel check."""
    hosts = {}
    for result in results:
        if result['purpose'] == 'tunnel' and result['check'] == check:
            ok, total = hosts.get(result['hostname'], (0, 0))
            hosts[result['hostname']] = (ok + int(result['ok']), total + 1)
    return hosts


def _protocol_state(results, check):
    hosts = _tunnel_hosts(results, check)
    answered = sorted(h for h, counts in hosts.items() if counts[0])
    silent = sorted(h for h, counts in hosts.items() if not counts[0])
    return hosts, answered, silent


def _http2_check(results):
    return 'tls' if any(r['check'] == 'tls' for r in results) else 'tcp'


def recommend(results):
    """``(protocol, reason)``: quic when QUIC answers, else http2 when TCP 7844 (and TLS) does, else none.

    That is cloudflared's own order with ``--protocol auto``: QUIC first,
    HTTP/2 over TCP 7844 when QUIC fails.
    """
    quic_hosts, quic_ok, quic_silent = _protocol_state(results, 'quic')
    http2_check = _http2_check(results)
    http2_hosts, http2_ok, http2_silent = _protocol_state(results, http2_check)
    if quic_ok:
        reason = 'QUIC handshakes answered by %s' % _counts(quic_hosts, quic_ok)
        if quic_silent:
            reason += '; no QUIC answer from %s: fewer regions, less redundancy' % ', '.join(quic_silent)
        return 'quic', reason
    if http2_ok:
        reason = '%s on TCP 7844 succeeded with %s' % ('TLS' if http2_check == 'tls' else 'TCP connect',
                                                       _counts(http2_hosts, http2_ok))
        if quic_hosts:
            reason += ', but no QUIC answer on UDP 7844: cloudflared falls back to http2'
            reason += _quic_loss_cause(results)
        if http2_silent:
            reason += '; %s did not answer' % ', '.join(http2_silent)
        return 'http2', reason
    if not quic_hosts and not http2_hosts:
        return 'none', 'no tunnel address was probed'
    return 'none', 'no tunnel address answered on UDP 7844 (QUIC) or TCP 7844 (%s)%s%s' % (
        http2_check.upper(), _quic_loss_cause(results), _tls_loss_cause(results))


def _tls_loss_cause(results):
    """Why HTTP/2 failed when a short hello proved TCP 7844 open (see reachability.interpret_cloudflared_hello)."""
    if any(r['check'] == 'tls' and r.get('error_kind') == 'tls_size' for r in results):
        return (' (TCP 7844: a short ClientHello was answered, cloudflared\'s post-quantum one of about 1.4 KB was '
                'lost: packet size / path MTU)')
    return ''


QUIC_LOSS_CAUSES = {
    'quic_size': ' (packet size / path MTU: only datagrams smaller than cloudflared\'s Initials got through)',
    'quic_multi_initial': ' (only the first Initial of a connection got through: cloudflared\'s ClientHello needs more)',
}


def _quic_loss_cause(results):
    """Why QUIC failed when smaller attempts proved the port open (see reachability.interpret_quic_attempts)."""
    kinds = sorted(set(r['error_kind'] for r in results if r['check'] == 'quic' and not r['ok']) & set(QUIC_LOSS_CAUSES))
    return ''.join(QUIC_LOSS_CAUSES[kind] for kind in kinds)


def _counts(hosts, names):
    return ', '.join('%s (%d/%d addresses)' % (name, hosts[name][0], hosts[name][1]) for name in names)


def _network(text):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def blocks_holding(addresses, cidrs):
    """The blocks of ``cidrs`` that hold one of ``addresses``, plus each address none holds, collapsed, IPv4 first.

    What to open for failed addresses: the plan's own blocks (a /24 when the plan was widened to /24s), never
    a block of another family or one whose addresses all answered. Text that is no address is kept as it is.
    """
    networks = [n for n in (_network(c) for c in cidrs) if n is not None]
    chosen, other = set(), set()
    for text in addresses:
        address = _network(text)
        if address is None:
            other.add(str(text))
            continue
        holding = [n for n in networks if n.version == address.version and address.subnet_of(n)]
        chosen.update(holding or [address])
    return [str(n) for version in (4, 6)
            for n in ipaddress.collapse_addresses(sorted(n for n in chosen if n.version == version))] + sorted(other)


def destinations_to_open(plan, failed, families):
    """``[{purpose, protocol, port, destinations}]`` for the failed (purpose, protocol, port) groups: only the plan's
    blocks that hold a failed address, in the failed families (the failed addresses themselves when the plan has no
    rule for a group, as with explicit targets) - a host where only IPv6 fails is told to open only IPv6."""
    entries = []
    groups = sorted(set((r['purpose'], r['protocol'], r['port']) for r in failed))
    for purpose, protocol, port in groups:
        rule = next((r for r in (plan or {}).get('rules', []) if (r['purpose'], r['protocol'], r['port'])
                     == (purpose, protocol, port)), None)
        addresses = sorted(set(r['address'] for r in failed if (r['purpose'], r['protocol'], r['port'])
                               == (purpose, protocol, port)))
        cidrs = [cidr for family in families for cidr in rule.get(family, [])] if rule else []
        entries.append({'purpose': purpose, 'protocol': protocol, 'port': port,
                        'destinations': blocks_holding(addresses, cidrs)})
    return entries


def open_line(entry):
    """One entry of destinations_to_open() in words: ``open outbound UDP 7844 to 198.41.192.7/32 (tunnel)``."""
    return 'open outbound %s %d to %s (%s)' % (entry['protocol'].upper(), entry['port'], ', '.join(entry['destinations']),
                                               entry['purpose'])


def _what_to_open(plan, failed, families):
    return [open_line(entry) for entry in destinations_to_open(plan, failed, families)]


def _failure_lines(failed):
    by_kind = {}
    for result in failed:
        key = (result['check'], result['protocol'], result['port'], result['error_kind'])
        by_kind.setdefault(key, []).append(result['address'])
    return ['%s %s/%d %s: %s' % (check, protocol, port, kind, ', '.join(addresses))
            for (check, protocol, port, kind), addresses in sorted(by_kind.items())]


def unmet_records(require, results, findings, plan, families):
    """One record per requirement that the results do not meet: ``{requirement, failed, to_open}``.

    ``failed`` says what failed (one line), ``to_open`` the destinations to open ([] when opening would not help);
    unmet_message renders a record for a person, the fleet report reads the fields.
    """
    protocol = recommend(results)[0]
    unmet = []

    def failures(predicate):
        """The failed results that ``predicate`` selects."""
        return [r for r in results if predicate(r) and not r['ok']]

    checks = {
        'any_tunnel': (protocol != 'none', failures(lambda r: r['purpose'] == 'tunnel')),
        'quic': (any(r['ok'] for r in results if r['check'] == 'quic'), failures(lambda r: r['check'] == 'quic')),
        'http2': (any(r['ok'] for r in results if r['purpose'] == 'tunnel' and r['check'] == _http2_check(results)),
                  failures(lambda r: r['purpose'] == 'tunnel' and r['protocol'] == 'tcp')),
    }
    for purpose in ('api', 'update'):
        mine = [r for r in results if r['purpose'] == purpose]
        hosts = set(r['hostname'] for r in mine)
        # Every host name of the purpose must answer on at least one address, with every check.
        met = bool(mine) and all(any(r['ok'] for r in mine if r['hostname'] == h and r['check'] == c)
                                 for h in hosts for c in set(r['check'] for r in mine))
        checks[purpose] = (met, failures(lambda r, p=purpose: r['purpose'] == p))
    bad_dns = [f for f in findings if f['kind'] in ('no_resolver', 'unresolvable')]
    for requirement in require:
        if requirement == 'dns':
            if bad_dns:
                unmet.append(dict(requirement='dns', failed='; '.join(f['message'] for f in bad_dns), to_open=[]))
            continue
        met, failed = checks[requirement]
        if met:
            continue
        if not failed:
            unmet.append(dict(requirement=requirement, failed='nothing to probe (the plan or the checks leave it out)',
                              to_open=[]))
            continue
        unmet.append(dict(requirement=requirement, failed='; '.join(_failure_lines(failed)),
                          to_open=list(_what_to_open(plan, failed, families))))
    return unmet


def unmet_message(record):
    """An unmet requirement for a person: what failed and, where it helps, what to open."""
    message = '%s: %s' % (record['requirement'], record['failed'])
    return message + FIX_MARK + FIX_SEPARATOR.join(record['to_open']) if record['to_open'] else message


def unmet_requirements(require, results, findings, plan, families):
    """One message per requirement that the results do not meet (unmet_records, rendered)."""
    return [unmet_message(record) for record in unmet_records(require, results, findings, plan, families)]


def _works(results, protocol, family):
    """Whether the tunnel answered over ``protocol`` (quic / http2) in ``family``: None when not probed there."""
    check = 'quic' if protocol == 'quic' else _http2_check(results)
    mine = [r for r in results if r['purpose'] == 'tunnel' and r['check'] == check and r['family'] == family]
    return any(r['ok'] for r in mine) if mine else None


FAMILY_WORDS = {'ipv4': 'IPv4', 'ipv6': 'IPv6'}
PROTOCOL_WORDS = {'quic': 'QUIC (UDP 7844)', 'http2': 'HTTP/2 (TCP 7844)'}


HTTP2_LOSES = ('with http2 cloudflared loses WARP-routed UDP, ICMP and private DNS resolution, which need QUIC '
               '(supervisor/tunnel.go)')


def _regions_answered(results, protocol, family=None):
    """The tunnel host names (regions) that answered over ``protocol`` (in ``family``, when given)."""
    check = 'quic' if protocol == 'quic' else _http2_check(results)
    return set(r['hostname'] for r in results if r['purpose'] == 'tunnel' and r['check'] == check and r['ok']
               and (family is None or r['family'] == family))


def _choose_protocol(results, regions):
    """``(protocol, every region answered it)``: cloudflared's pre-check rule first (prechecks/checker.go,
    suggestProtocol: QUIC, else HTTP/2, only when every region passes), else the protocol that answered somewhere."""
    if not regions:
        return None, False
    for protocol in ('quic', 'http2'):
        if _regions_answered(results, protocol) >= regions:
            return protocol, True
    for protocol in ('quic', 'http2'):
        if _regions_answered(results, protocol):
            return protocol, False
    return None, False


def _protocol_reason(results, protocol, everywhere, regions):
    quic_missing = sorted(regions - _regions_answered(results, 'quic'))
    if protocol == 'quic':
        if everywhere:
            return 'QUIC answered from every region (%s), as cloudflared\'s pre-check requires to suggest it' % (
                ', '.join(sorted(regions)))
        return ('QUIC answered from %s only, not from %s, and HTTP/2 from no more: cloudflared\'s pre-check suggests '
                'no protocol here; open what is listed under to_open for the other regions'
                % (', '.join(sorted(regions - set(quic_missing))), ', '.join(quic_missing)))
    lost = _quic_loss_cause(results)
    if quic_missing == sorted(regions):
        reason = ('QUIC (UDP 7844) got no answer%s, HTTP/2 (TCP 7844) did: set http2 so that cloudflared does not '
                  'retry QUIC for minutes before falling back' % lost)
    else:
        reason = ('QUIC (UDP 7844) got no answer from %s%s: with quic, cloudflared keeps only the connections to the '
                  'other regions (it never falls back while one QUIC connection works) and its pre-check suggests '
                  'http2, which answered from every region' % (', '.join(quic_missing), lost))
    if not everywhere:
        reason += '; HTTP/2 answered from %s only, not from %s' % (
            ', '.join(sorted(_regions_answered(results, 'http2'))),
            ', '.join(sorted(regions - _regions_answered(results, 'http2'))))
    return reason + '; ' + HTTP2_LOSES


def recommend_settings(results):
    """cloudflared's ``protocol`` and ``edge-ip-version`` for this host, each ``{option, value, reason}``.

    The protocol follows cloudflared's pre-check (prechecks/checker.go): QUIC
    when it answered from every region (tunnel host name), else HTTP/2 when
    that did - saying which regions QUIC missed and what http2 loses -
    else the protocol that answered from some region. The address family is
    where that protocol answered from every region that answered it:
    ``auto`` when both families did, else the one that did - because with
    ``auto`` (the default since 2026.5) cloudflared may pick IPv6 on a
    dual-stack host whose IPv6 path to the edge is blocked. ``value`` is None
    when no tunnel protocol answered.
    """
    probed = [f for f in egress_contract.FAMILIES if any(r['purpose'] == 'tunnel' and r['family'] == f for r in results)]
    regions = set(r['hostname'] for r in results if r['purpose'] == 'tunnel' and r['check'] in ('quic', 'tls', 'tcp'))
    protocol, everywhere = _choose_protocol(results, regions)
    if protocol is None:
        reason = ('no tunnel address was probed' if not probed else
                  'neither QUIC (UDP 7844) nor HTTP/2 (TCP 7844) answered over %s%s%s: open what is listed under to_open'
                  % (' or '.join(FAMILY_WORDS[f] for f in probed), _quic_loss_cause(results), _tls_loss_cause(results)))
        return {'protocol': {'option': '--protocol', 'value': None, 'reason': reason},
                'edge_ip_version': {'option': '--edge-ip-version', 'value': None, 'reason': reason}}
    answered = _regions_answered(results, protocol)
    good = [f for f in probed if _regions_answered(results, protocol, f) >= answered]
    if not good:
        good = [f for f in probed if _works(results, protocol, f)]
    protocol_reason = _protocol_reason(results, protocol, everywhere, regions)
    if protocol == 'quic' and everywhere:
        protocol_reason = 'QUIC answered over %s from every region (%s), as cloudflared\'s pre-check requires' % (
            ' and '.join(FAMILY_WORDS[f] for f in good), ', '.join(sorted(regions)))
    if len(good) == 2:
        family, family_reason = 'auto', '%s answered over both IPv4 and IPv6' % PROTOCOL_WORDS[protocol]
    else:
        family = '4' if good[0] == 'ipv4' else '6'
        other = [f for f in egress_contract.FAMILIES if f != good[0]][0]
        if other in probed:
            family_reason = ('%s answered over %s only: with auto cloudflared may choose %s, which is blocked here'
                             % (PROTOCOL_WORDS[protocol], FAMILY_WORDS[good[0]], FAMILY_WORDS[other]))
        else:
            family_reason = '%s answered over %s; %s was not probed (no route, or ip_version)' % (
                PROTOCOL_WORDS[protocol], FAMILY_WORDS[good[0]], FAMILY_WORDS[other])
    return {'protocol': {'option': '--protocol', 'value': protocol, 'reason': protocol_reason},
            'edge_ip_version': {'option': '--edge-ip-version', 'value': family, 'reason': family_reason}}


def report(require, plan, families, results, nameservers, answers, asked_dns):
    """The module's whole return value (without ``changed``), and the unmet requirements in it."""
    findings = dns_findings(plan, families, nameservers, answers) if asked_dns else []
    protocol, reason = recommend(results)
    records = unmet_records(require, results, findings, plan, families)
    return dict(results=results, summary=summarize(results), families=families, recommended_protocol=protocol,
                recommendation_reason=reason, unmet_requirements=[unmet_message(record) for record in records],
                unmet_detail=records, recommended_settings=recommend_settings(results),
                to_open=destinations_to_open(plan, [r for r in results if not r['ok']], families),
                dns=dict(nameservers=nameservers if asked_dns else [], answers=answers, findings=findings))
