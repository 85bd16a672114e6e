# -*- coding: utf-8 -*-
"""Pure functions of the probe: targets, DNS drift, summary, recommendation, requirements."""

from __future__ import annotations

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import probe_options, probe_report, reachability

PLAN = {
    'version': 1,
    'srv_names': ['_v2-origintunneld._tcp.argotunnel.com'],
    'endpoints': [
        {'hostname': 'region1.v2.argotunnel.com', 'purpose': 'tunnel', 'port': 7844, 'protocols': ['tcp', 'udp'],
         'server_names': {'tcp': 'h2.cftunnel.com', 'udp': 'quic.cftunnel.com'},
         'ipv4': ['198.51.100.11', '198.51.100.12'], 'ipv6': ['2001:db8:e::11']},
        {'hostname': 'region2.v2.argotunnel.com', 'purpose': 'tunnel', 'port': 7844, 'protocols': ['tcp', 'udp'],
         'server_names': {'tcp': 'h2.cftunnel.com', 'udp': 'quic.cftunnel.com'},
         'ipv4': ['198.51.100.21'], 'ipv6': []},
        {'hostname': 'api.cloudflare.com', 'purpose': 'api', 'port': 443, 'protocols': ['tcp'],
         'server_names': {'tcp': 'api.cloudflare.com'}, 'ipv4': ['198.51.100.80'], 'ipv6': []},
    ],
    'rules': [
        {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32', '198.51.100.12/31'], 'ipv6': []},
        {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32', '198.51.100.12/31'], 'ipv6': []},
        {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32'], 'ipv6': []},
    ],
}


def result(hostname, address, check, ok, purpose='tunnel', error_kind=None, port=7844):
    protocol = 'udp' if check == 'quic' else 'tcp'
    return {'hostname': hostname, 'purpose': purpose, 'address': address, 'family': 'ipv4', 'port': port,
            'protocol': protocol, 'check': check, 'ok': ok, 'error_kind': None if ok else (error_kind or 'timeout')}


def test_plan_targets_apply_the_right_checks_and_server_names():
    targets = reachability.plan_targets(PLAN, list(reachability.CHECKS), None, ['ipv4', 'ipv6'], {})
    by_key = {(t['address'], t['protocol']): t for t in targets}
    assert len(targets) == 2 * 4 + 1
    assert by_key[('198.51.100.11', 'tcp')]['checks'] == ['tcp', 'tls']
    assert by_key[('198.51.100.11', 'tcp')]['server_name'] == 'h2.cftunnel.com'
    assert by_key[('2001:db8:e::11', 'udp')]['checks'] == ['quic']
    assert by_key[('2001:db8:e::11', 'udp')]['server_name'] == 'quic.cftunnel.com'
    assert by_key[('198.51.100.80', 'tcp')]['checks'] == ['tcp', 'https']
    assert by_key[('198.51.100.80', 'tcp')]['server_name'] == 'api.cloudflare.com'


def test_plan_targets_filter_by_purpose_family_check_and_override_sni():
    targets = reachability.plan_targets(PLAN, ['quic'], ['tunnel'], ['ipv4'], {'udp': 'other.example'})
    assert [(t['address'], t['checks'], t['server_name']) for t in targets] == [
        ('198.51.100.11', ['quic'], 'other.example'), ('198.51.100.12', ['quic'], 'other.example'),
        ('198.51.100.21', ['quic'], 'other.example')]


def test_quic_is_recommended_when_it_answers():
    results = [result('region1.v2.argotunnel.com', '198.51.100.11', 'quic', True),
               result('region2.v2.argotunnel.com', '198.51.100.21', 'quic', False),
               result('region1.v2.argotunnel.com', '198.51.100.11', 'tls', True)]
    protocol, reason = probe_report.recommend(results)
    assert protocol == 'quic'
    assert 'region1.v2.argotunnel.com (1/1 addresses)' in reason and 'no QUIC answer from region2' in reason


def test_http2_when_only_tcp_answers_and_none_when_nothing_does():
    results = [result('region1.v2.argotunnel.com', '198.51.100.11', 'quic', False),
               result('region1.v2.argotunnel.com', '198.51.100.11', 'tls', True)]
    assert probe_report.recommend(results)[0] == 'http2'
    results[1]['ok'] = False
    assert probe_report.recommend(results)[0] == 'none'


def test_unmet_requirements_name_what_failed_and_what_to_open():
    results = [result('region1.v2.argotunnel.com', '198.51.100.11', 'quic', False),
               result('region1.v2.argotunnel.com', '198.51.100.12', 'quic', False, error_kind='refused'),
               result('region1.v2.argotunnel.com', '198.51.100.11', 'tls', True),
               result('api.cloudflare.com', '198.51.100.80', 'https', False, purpose='api', port=443)]
    unmet = probe_report.unmet_requirements(['any_tunnel', 'quic', 'api'], results, [], PLAN, ['ipv4'])
    assert len(unmet) == 2
    assert unmet[0].startswith('quic: quic udp/7844 refused: 198.51.100.12; quic udp/7844 timeout: 198.51.100.11')
    assert 'open outbound UDP 7844 to 198.51.100.11/32, 198.51.100.12/31 (tunnel)' in unmet[0]
    assert unmet[1].startswith('api: https tcp/443 timeout: 198.51.100.80')
    assert 'open outbound TCP 443 to 198.51.100.80/32 (api)' in unmet[1]
    # The same as records: what failed and the destinations to open as data, rendered only into the message.
    records = probe_report.unmet_records(['any_tunnel', 'quic', 'api'], results, [], PLAN, ['ipv4'])
    assert [r['requirement'] for r in records] == ['quic', 'api']
    assert records[0]['to_open'] == ['open outbound UDP 7844 to 198.51.100.11/32, 198.51.100.12/31 (tunnel)']
    assert records[1]['to_open'] == ['open outbound TCP 443 to 198.51.100.80/32 (api)']
    assert records[1]['failed'] == 'https tcp/443 timeout: 198.51.100.80'
    assert [probe_report.unmet_message(r) for r in records] == unmet
    dns = probe_report.unmet_records(['dns'], [], [{'kind': 'unresolvable', 'message': 'SERVFAIL'}], PLAN, ['ipv4'])
    assert dns == [{'requirement': 'dns', 'failed': 'SERVFAIL', 'to_open': []}]
    assert probe_report.unmet_message(dns[0]) == 'dns: SERVFAIL'


def test_dns_requirement_uses_findings():
    findings = [{'kind': 'unresolvable', 'message': 'SERVFAIL from 198.51.100.53'}]
    assert probe_report.unmet_requirements(['dns'], [], findings, PLAN, ['ipv4']) == ['dns: SERVFAIL from 198.51.100.53']
    assert probe_report.unmet_requirements(['dns'], [], [{'kind': 'not_in_plan', 'message': 'x'}], PLAN, ['ipv4']) == []


def answer(name, qtype, values, ok=True):
    return {'name': name, 'type': qtype, 'ok': ok, 'answers': values, 'error_kind': None if ok else 'servfail',
            'message': '' if ok else 'SERVFAIL'}


def test_dns_drift_both_ways_and_unknown_srv_targets():
    answers = [
        answer('_v2-origintunneld._tcp.argotunnel.com', 'SRV',
               [(1, 1, 7844, 'region1.v2.argotunnel.com'), (1, 1, 7844, 'region9.v2.argotunnel.com')]),
        answer('region1.v2.argotunnel.com', 'A', ['198.51.100.11', '198.51.100.14']),
        answer('region2.v2.argotunnel.com', 'A', ['198.51.100.21']),
        answer('api.cloudflare.com', 'A', [], ok=False),
    ]
    findings = probe_report.dns_findings(PLAN, ['ipv4'], ['198.51.100.53'], answers)
    kinds = sorted((f['kind'], f.get('hostname') or f.get('name')) for f in findings)
    assert kinds == [('not_in_plan', 'region1.v2.argotunnel.com'), ('not_seen', 'region1.v2.argotunnel.com'),
                     ('srv_target_not_in_plan', 'region9.v2.argotunnel.com'), ('unresolvable', 'api.cloudflare.com')]
    drift = {f['kind']: f['addresses'] for f in findings if 'addresses' in f}
    assert drift == {'not_in_plan': ['198.51.100.14'], 'not_seen': ['198.51.100.12']}


def test_no_nameserver_is_a_finding():
    assert probe_report.dns_findings(PLAN, ['ipv4'], [], [])[0]['kind'] == 'no_resolver'


def test_summary_counts_per_group():
    results = [result('r1', '198.51.100.11', 'quic', True), result('r1', '198.51.100.12', 'quic', False)]
    assert probe_report.summarize(results) == [
        {'purpose': 'tunnel', 'check': 'quic', 'protocol': 'udp', 'family': 'ipv4', 'ok': 1, 'failed': 1, 'total': 2}]


def params(**values):
    base = {'plan': None, 'targets': None, 'timeout': 3.0, 'concurrency': 10, 'server_names': {}, 'ip_version': 'auto'}
    base.update(values)
    return base


@pytest.mark.parametrize('values, message', [
    ({'plan': PLAN, 'timeout': 0}, 'timeout=0'),
    ({'plan': PLAN, 'timeout': -2.0}, 'timeout=-2.0'),
    ({'plan': PLAN, 'concurrency': 0}, 'concurrency=0'),
    ({'plan': dict(PLAN, version=2)}, 'plan: version 2'),
    ({'plan': dict(PLAN, endpoints=[])}, 'plan: no endpoints'),
    ({'plan': dict(PLAN, endpoints=[{'hostname': 'x'}])}, 'plan: endpoints[0] lacks purpose, port, protocols'),
    ({'plan': dict(PLAN, endpoints=[dict(PLAN['endpoints'][0], ipv4=['not-an-ip'])])}, "ipv4='not-an-ip'"),
    ({'plan': PLAN, 'server_names': {'tpc': 'x'}}, 'server_names: tpc'),
    ({'targets': [{'address': '1.2.3', 'port': 1, 'check': 'tcp'}]}, "targets[0].address='1.2.3'"),
    ({'targets': [{'address': '198.51.100.1', 'port': 70000, 'check': 'tcp'}]}, 'targets[0].port=70000'),
    ({'targets': [{'address': '198.51.100.1', 'port': 7844, 'check': 'quic'}]}, 'check=quic needs a server_name'),
    ({'targets': []}, 'targets: empty'),
])
def test_bad_probe_options_are_named(values, message):
    problem = probe_options.validate_probe_params(params(**values))
    assert problem is not None and message in problem, problem


def test_good_options_pass_and_families_follow_ip_version():
    assert probe_options.validate_probe_params(params(plan=PLAN)) is None
    assert probe_options.families_for(params(plan=PLAN, ip_version='6'), None) == ['ipv6']
    seen = {}

    def routable(addresses):
        seen.update(addresses)
        return ['ipv4']
    assert probe_options.families_for(params(plan=PLAN), routable) == ['ipv4']
    assert seen['ipv6'] == ['2001:db8:e::11']


def txt(name, ok, error_kind=None, rcode='NOERROR'):
    return {'name': name, 'type': 'TXT', 'ok': ok, 'rcode': rcode, 'answers': ['x'] if ok else [],
            'error_kind': error_kind, 'message': '' if ok else '198.51.100.253: %s' % error_kind}


def test_cloudflareds_txt_questions_are_asked():
    questions = probe_report.dns_questions(PLAN, ['ipv4'])
    assert ('cfd-features.argotunnel.com', 'TXT') in questions
    assert ('protocol-v2.argotunnel.com', 'TXT') in questions


@pytest.mark.parametrize('answer, state, finding', [
    (txt('cfd-features.argotunnel.com', True), 'ok', False),
    (txt('cfd-features.argotunnel.com', False, 'nxdomain', 'NXDOMAIN'), 'absent', False),
    (txt('cfd-features.argotunnel.com', False, 'no_answer'), 'absent', False),
    (txt('cfd-features.argotunnel.com', False, 'timeout', None), 'blocked', True),
    (txt('cfd-features.argotunnel.com', False, 'dns_refused', 'REFUSED'), 'blocked', True),
    (txt('cfd-features.argotunnel.com', False, 'servfail', 'SERVFAIL'), 'blocked', True),
])
def test_txt_blocked_is_a_finding_and_absent_is_not(answer, state, finding):
    findings = probe_report.dns_findings(PLAN, ['ipv4'], ['198.51.100.253'], [answer])
    assert answer['state'] == state
    assert [f['kind'] for f in findings] == (['txt_blocked'] if finding else [])
    if finding:
        assert 'TXT cfd-features.argotunnel.com (asked by cloudflared) got no answer' in findings[0]['message']


# (QUIC IPv4, HTTP/2 IPv4, QUIC IPv6, HTTP/2 IPv6) answered -> (protocol, edge-ip-version): every combination.
SETTINGS = {
    (1, 1, 1, 1): ('quic', 'auto'), (1, 1, 1, 0): ('quic', 'auto'), (1, 1, 0, 1): ('quic', '4'),
    (1, 1, 0, 0): ('quic', '4'), (1, 0, 1, 1): ('quic', 'auto'), (1, 0, 1, 0): ('quic', 'auto'),
    (1, 0, 0, 1): ('quic', '4'), (1, 0, 0, 0): ('quic', '4'), (0, 1, 1, 1): ('quic', '6'),
    (0, 1, 1, 0): ('quic', '6'), (0, 1, 0, 1): ('http2', 'auto'), (0, 1, 0, 0): ('http2', '4'),
    (0, 0, 1, 1): ('quic', '6'), (0, 0, 1, 0): ('quic', '6'), (0, 0, 0, 1): ('http2', '6'),
    (0, 0, 0, 0): (None, None),
}


def dual_stack(q4, h4, q6, h6):
    rows = []
    for family, address, quic, http2 in (('ipv4', '198.51.100.11', q4, h4), ('ipv6', '2001:db8:e::11', q6, h6)):
        for check, ok in (('quic', quic), ('tcp', http2), ('tls', http2)):
            rows.append(dict(result('region1.v2.argotunnel.com', address, check, bool(ok)), family=family))
    return rows


@pytest.mark.parametrize('answered', sorted(SETTINGS), ids=lambda a: 'q4=%d,h4=%d,q6=%d,h6=%d' % a)
def test_settings_for_every_quic_http2_ipv4_ipv6_combination(answered):
    settings = probe_report.recommend_settings(dual_stack(*answered))
    assert (settings['protocol']['value'], settings['edge_ip_version']['value']) == SETTINGS[answered]
    assert settings['protocol']['option'] == '--protocol' and settings['edge_ip_version']['option'] == '--edge-ip-version'
    assert all(s['reason'] and '\n' not in s['reason'] for s in settings.values())
    protocol = probe_report.recommend(dual_stack(*answered))[0]
    assert protocol == (SETTINGS[answered][0] or 'none'), 'the settings agree with recommended_protocol'


def test_settings_reasons_say_why():
    blocked_v6 = probe_report.recommend_settings(dual_stack(1, 1, 0, 0))['edge_ip_version']['reason']
    assert blocked_v6 == 'QUIC (UDP 7844) answered over IPv4 only: with auto cloudflared may choose IPv6, which is blocked here'
    quic_lost = dual_stack(0, 1, 0, 1)
    for row in quic_lost:
        if row['check'] == 'quic':
            row['error_kind'] = 'quic_size'
    reason = probe_report.recommend_settings(quic_lost)['protocol']['reason']
    assert reason.startswith('QUIC (UDP 7844) got no answer (packet size / path MTU') and 'falling back' in reason
    # http2 is recommended, saying what it costs (supervisor/tunnel.go).
    assert reason.endswith('loses WARP-routed UDP, ICMP and private DNS resolution, which need QUIC (supervisor/tunnel.go)')
    v4_only = [r for r in dual_stack(1, 1, 1, 1) if r['family'] == 'ipv4']
    assert probe_report.recommend_settings(v4_only)['edge_ip_version'] == {
        'option': '--edge-ip-version', 'value': '4',
        'reason': 'QUIC (UDP 7844) answered over IPv4; IPv6 was not probed (no route, or ip_version)'}


def test_to_open_is_data_for_every_failed_group():
    results = [result('region1.v2.argotunnel.com', '198.51.100.11', 'quic', False),
               result('region1.v2.argotunnel.com', '198.51.100.11', 'tls', True),
               result('api.cloudflare.com', '198.51.100.80', 'https', False, purpose='api', port=443)]
    output = probe_report.report([], PLAN, ['ipv4'], results, ['198.51.100.253'], [], False)
    assert output['to_open'] == [
        {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'destinations': ['198.51.100.80/32']},
        {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'destinations': ['198.51.100.11/32']}]
    assert [probe_report.open_line(e) for e in output['to_open']] == [
        'open outbound TCP 443 to 198.51.100.80/32 (api)',
        'open outbound UDP 7844 to 198.51.100.11/32 (tunnel)']
    assert output['unmet_requirements'] == []


def test_to_open_names_only_the_failed_family_and_addresses_in_the_plans_blocks():
    rules = [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.0/24'],
              'ipv6': ['2001:db8:e::11/128', '2001:db8:e::12/128', '2001:db8:e::21/128']}]
    failed = [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'address': address}
              for address in ('2001:db8:e::12', '2001:db8:e::11', '2001:db8:e::21')]
    # IPv6 only: no IPv4 block, and the IPv6 ones collapsed (::11 and ::12 are not one aligned block, so both stay).
    assert probe_report.destinations_to_open({'rules': rules}, failed, ['ipv4', 'ipv6']) == [
        {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844,
         'destinations': ['2001:db8:e::11/128', '2001:db8:e::12/128', '2001:db8:e::21/128']}]
    # An IPv4 address inside the plan's widened /24: the block the firewall opens, once.
    failed = [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'address': a} for a in ('198.51.100.7', '198.51.100.9')]
    assert probe_report.destinations_to_open({'rules': rules}, failed, ['ipv4', 'ipv6'])[0]['destinations'] == [
        '198.51.100.0/24']
    # No rule for the group (explicit targets): the failed addresses themselves, aggregated.
    failed = [{'purpose': 'extra', 'protocol': 'tcp', 'port': 22, 'address': a} for a in ('192.0.2.2', '192.0.2.3')]
    assert probe_report.destinations_to_open({'rules': rules}, failed, ['ipv4'])[0]['destinations'] == ['192.0.2.2/31']


def test_every_part_reads_the_plan_contract_from_one_module():
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import edge_names, egress_plan, fleet_report
    assert egress_plan.PLAN_VERSION == egress_contract.PLAN_VERSION == 1
    # FAMILIES and PROTOCOLS have one name, egress_contract's: no module keeps a copy of its own.
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall, windows_probe
    for module in (egress_plan, reachability, fleet_report, egress_request, probe_options, windows_firewall, windows_probe):
        assert not {'FAMILIES', 'PROTOCOLS', 'BOTH_FAMILIES', 'PROTOCOL_ORDER'} & set(vars(module)), module.__name__
    assert edge_names.PURPOSE_ORDER is egress_contract.PURPOSES
    assert probe_options.PROBE_ARGUMENT_SPEC['purposes']['choices'] == list(egress_contract.PURPOSES)
    assert (edge_names.TUNNEL_PORT, reachability.HTTPS_PORT) == (egress_contract.TUNNEL_PORT, egress_contract.HTTPS_PORT)
    problem = probe_options._plan_problem({'version': 2, 'endpoints': []}, {}, probe_options.CHECKS)
    assert problem == 'plan: version 2 is not an egress plan this collection reads (expected 1)'


def two_regions(quic2=True, http2_2=True):
    """region1 answers everything; region2 answers QUIC and HTTP/2 as asked (IPv4)."""
    rows = []
    for hostname, address, quic, http2 in (('region1.v2.argotunnel.com', '198.51.100.11', True, True),
                                           ('region2.v2.argotunnel.com', '198.51.100.21', quic2, http2_2)):
        for check, ok in (('quic', quic), ('tcp', http2), ('tls', http2)):
            rows.append(result(hostname, address, check, ok))
    return rows


def test_settings_follow_the_prechecks_every_region_rule_naming_the_regions():
    everywhere = probe_report.recommend_settings(two_regions())['protocol']
    assert everywhere['value'] == 'quic'
    assert everywhere['reason'] == ('QUIC answered over IPv4 from every region (region1.v2.argotunnel.com, '
                                    'region2.v2.argotunnel.com), as cloudflared\'s pre-check requires')
    # QUIC from region1 only: the pre-check suggests http2, which reaches both; the reason names the region and the cost.
    one = probe_report.recommend_settings(two_regions(quic2=False))['protocol']
    assert one['value'] == 'http2'
    assert one['reason'].startswith('QUIC (UDP 7844) got no answer from region2.v2.argotunnel.com: with quic, '
                                    'cloudflared keeps only the connections to the other regions')
    assert 'loses WARP-routed UDP, ICMP and private DNS' in one['reason']
    assert probe_report.recommend(two_regions(quic2=False))[0] == 'quic'  # what cloudflared itself would run
    # Neither protocol from every region: the pre-check suggests nothing; the one that answered somewhere, named.
    neither = probe_report.recommend_settings(two_regions(quic2=False, http2_2=False))['protocol']
    assert neither['value'] == 'quic'
    assert 'not from region2.v2.argotunnel.com' in neither['reason'] and 'suggests no protocol' in neither['reason']


def test_dns_names_of_the_plan_are_asked_once():
    plan = dict(PLAN, dns_names=[{'name': 'region1.v2.argotunnel.com', 'types': ['A', 'AAAA']},
                                 {'name': 'cfd-features.argotunnel.com', 'types': ['TXT']}])
    questions = probe_report.dns_questions(plan, ['ipv4'])
    assert len(questions) == len(set(questions))
    us = dict(plan, endpoints=[dict(e, hostname=e['hostname'].replace('region', 'us-region')) for e in PLAN['endpoints']])
    questions = probe_report.dns_questions(us, ['ipv6'])
    assert ('region1.v2.argotunnel.com', 'AAAA') in questions and ('region1.v2.argotunnel.com', 'A') not in questions
    assert questions.count(('cfd-features.argotunnel.com', 'TXT')) == 1


@pytest.mark.parametrize('dns_names, message', [
    ('x', 'plan: dns_names=\'x\': expected a list'),
    ([{'name': 'bad name', 'types': ['A']}], 'plan: dns_names[0]='),
    ([{'name': 'region1.v2.argotunnel.com', 'types': ['MX']}], "plan: dns_names[0].types=['MX']: expected a list of A, AAAA, TXT"),
])
def test_bad_dns_names_are_named(dns_names, message):
    problem = probe_options.validate_probe_params(params(plan=dict(PLAN, dns_names=dns_names)))
    assert problem is not None and message in problem, problem


def test_settings_without_tunnel_results_recommend_nothing():
    # checks=[dns] or purposes=[api]: no tunnel row, no protocol (and no crash).
    for results in ([], [result('api.cloudflare.com', '198.51.100.80', 'https', True, purpose='api', port=443)]):
        settings = probe_report.recommend_settings(results)
        assert settings['protocol']['value'] is None and settings['protocol']['reason'] == 'no tunnel address was probed'


def test_a_lost_large_hello_is_named_when_nothing_answers():
    rows = [result('region1.v2.argotunnel.com', '198.51.100.11', 'quic', False),
            result('region1.v2.argotunnel.com', '198.51.100.11', 'tcp', True),
            result('region1.v2.argotunnel.com', '198.51.100.11', 'tls', False, error_kind='tls_size')]
    protocol, reason = probe_report.recommend(rows)
    assert protocol == 'none' and "cloudflared's post-quantum one of about 1.4 KB was lost" in reason
    assert 'packet size / path MTU' in probe_report.recommend_settings(rows)['protocol']['reason']
