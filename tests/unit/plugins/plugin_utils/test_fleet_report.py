# -*- coding: utf-8 -*-
"""The fleet report's pure functions, fed with what the real probe report (probe_report.report) returns."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import re

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import probe_report, reachability
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import fleet_report

R1, R2 = 'region1.v2.argotunnel.com', 'region2.v2.argotunnel.com'
SRV = '_v2-origintunneld._tcp.argotunnel.com'
TUNNEL = {'purpose': 'tunnel', 'port': 7844, 'protocols': ['tcp', 'udp'],
          'server_names': {'tcp': 'h2.cftunnel.com', 'udp': 'quic.cftunnel.com'}}
PLAN = {
    'version': 1, 'region': 'global', 'generation': 'v2', 'source': 'dns', 'resolved_at': '2026-11-27T10:00:00Z',
    'srv_names': [SRV],
    'endpoints': [
        dict(TUNNEL, hostname=R1, ipv4=['198.51.100.11', '198.51.100.12'], ipv6=['2001:db8:e::11', '2001:db8:e::12']),
        dict(TUNNEL, hostname=R2, ipv4=['198.51.100.21', '198.51.100.22'], ipv6=['2001:db8:e::21']),
        {'hostname': 'api.cloudflare.com', 'purpose': 'api', 'port': 443, 'protocols': ['tcp'],
         'server_names': {'tcp': 'api.cloudflare.com'}, 'ipv4': ['198.51.100.80'], 'ipv6': ['2001:db8:e::80']},
        {'hostname': 'update.argotunnel.com', 'purpose': 'update', 'port': 443, 'protocols': ['tcp'],
         'server_names': {'tcp': 'update.argotunnel.com'}, 'ipv4': ['198.51.100.90'], 'ipv6': []},
    ],
    'rules': [
        {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32', '198.51.100.12/31'],
         'ipv6': ['2001:db8:e::11/128']},
        {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32', '198.51.100.12/31'],
         'ipv6': ['2001:db8:e::11/128']},
        {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32'], 'ipv6': ['2001:db8:e::80/128']},
        {'purpose': 'update', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.90/32'], 'ipv6': []},
    ],
}
BOTH = ['ipv4', 'ipv6']
# What to open when UDP 7844 fails everywhere: the failed addresses in the plan's blocks, both families.
UDP_OPEN = ['198.51.100.11/32', '198.51.100.12/31', '198.51.100.21/32', '198.51.100.22/32',
            '2001:db8:e::11/128', '2001:db8:e::12/128', '2001:db8:e::21/128']
UDP_OPEN_LINE = 'open outbound UDP 7844 to %s (tunnel)' % ', '.join(UDP_OPEN)


def _results(plan, families, fail):
    """What reachability.run_probes returns for the plan's targets; ``fail(target, check)`` gives an error kind or None."""
    results = []
    for target in reachability.plan_targets(plan, list(reachability.CHECKS), None, families, {}):
        for check in target['checks']:
            kind = fail(target, check)
            results.append({
                'hostname': target['hostname'], 'purpose': target['purpose'], 'address': target['address'],
                'family': target['family'], 'port': target['port'], 'protocol': target['protocol'], 'check': check,
                'server_name': target['server_name'] if check != 'tcp' else None, 'ok': kind is None,
                'error_kind': kind, 'message': 'answered' if kind is None else '%s %d: %s' % (check, target['port'], kind),
                'latency_ms': 12})
    return results


def _answers(plan, families, unresolvable=(), extra_a=None):
    """What the host's resolver answers to the plan's questions: the plan itself unless told otherwise."""
    answers = []
    for name, qtype in probe_report.dns_questions(plan, families):
        if (name, qtype) in unresolvable:
            answers.append({'name': name, 'type': qtype, 'ok': False, 'rcode': 'SERVFAIL', 'answers': [], 'ttl': None,
                            'nameserver': '192.0.2.53', 'error_kind': 'servfail',
                            'message': '192.0.2.53 answered SERVFAIL', 'latency_ms': 3})
            continue
        if qtype == 'TXT' and name == 'protocol-v2.argotunnel.com':
            # cloudflared's rollout record may not exist: an authoritative NXDOMAIN, not a problem.
            answers.append({'name': name, 'type': qtype, 'ok': False, 'rcode': 'NXDOMAIN', 'answers': [], 'ttl': None,
                            'nameserver': '192.0.2.53', 'error_kind': 'nxdomain',
                            'message': '192.0.2.53 answered NXDOMAIN', 'latency_ms': 3})
            continue
        if qtype == 'SRV':
            values = [(1, 1, 7844, e['hostname']) for e in plan['endpoints'] if e['purpose'] == 'tunnel']
        elif qtype == 'TXT':
            values = ['features']
        else:
            endpoint = next(e for e in plan['endpoints'] if e['hostname'] == name)
            values = list(endpoint['ipv4' if qtype == 'A' else 'ipv6']) + list((extra_a or {}).get((name, qtype), []))
        answers.append({'name': name, 'type': qtype, 'ok': True, 'rcode': 'NOERROR', 'answers': sorted(values),
                        'ttl': 300, 'nameserver': '192.0.2.53', 'error_kind': None, 'message': '', 'latency_ms': 3})
    return answers


def probed(fail=lambda target, check: None, families=None, require=('any_tunnel',), nameservers=('192.0.2.53',),
           answers=None, plan=None):
    """A host's registered edge_probe result: probe_report.report() as the module returns it (fail_json when unmet)."""
    families, plan = families or BOTH, plan or PLAN
    output = probe_report.report(list(require), plan, families, _results(plan, families, fail), list(nameservers),
                                 _answers(plan, families) if answers is None else answers, True)
    output.update(changed=False, elapsed_ms=2013)
    if output['unmet_requirements']:
        output.update(failed=True, msg='edge_probe: not met: %s' % ' | '.join(output['unmet_requirements']))
    return output


def udp_dropped(target, check):
    return 'timeout' if check == 'quic' else None


def ipv6_blocked(target, check):
    return 'unreachable' if target['family'] == 'ipv6' else None


def region2_quic_refused(target, check):
    return 'refused' if check == 'quic' and target['hostname'] == R2 else None


def nothing_answers(target, check):
    return 'timeout'


def fleet():
    """A small fleet with one of each kind of host, as the action would collect it."""
    return [
        ('web1', probed()),
        ('web2', probed(udp_dropped, require=['any_tunnel', 'quic'])),
        ('web3', probed(region2_quic_refused)),
        ('v4only', probed(families=['ipv4'])),
        ('db1', {'unreachable': True, 'changed': False,
                 'msg': 'Failed to connect to the host via ssh: ssh: connect to host db1 port 22: Connection refused'}),
        ('db2', None),
    ]


def report_of(hosts=None, plan=None, with_plan=True):
    rows = [fleet_report.host_row(host, result) for host, result in (hosts or fleet())]
    return fleet_report.fleet_report(rows, '2026-11-27T10:05:00Z', (plan or PLAN) if with_plan else None)


# ------------------------------------------------------------------------------------------------
# rows
# ------------------------------------------------------------------------------------------------

def test_a_healthy_dual_stack_host_is_ok_in_every_column():
    row = fleet_report.host_row('web1', probed())
    assert row['state'] == 'ok' and row['protocol'] == 'quic' and row['message'] is None
    assert row['failing'] == [] and row['problems'] == [] and row['to_open'] == []
    texts = dict((column, cell['text']) for column, cell in row['cells'].items())
    # 4 IPv4 tunnel addresses, 3 IPv6; DNS: the SRV name, A+AAAA of the four host names and two TXT (one absent).
    assert texts == {'dns': '11/11', 'tcp_ipv4': '4/4', 'tls_ipv4': '4/4', 'quic_ipv4': '4/4', 'api_ipv4': '1/1',
                     'update_ipv4': '1/1', 'tcp_ipv6': '3/3', 'tls_ipv6': '3/3', 'quic_ipv6': '3/3', 'api_ipv6': '1/1',
                     'update_ipv6': ''}
    assert row['cells']['update_ipv6']['state'] == 'skipped', 'the plan has no IPv6 address for the update host'
    assert {cell['state'] for column, cell in row['cells'].items() if column != 'update_ipv6'} == {'ok'}


def test_udp_dropped_fails_quic_and_says_what_to_open():
    result = probed(udp_dropped, require=['any_tunnel', 'quic'])
    assert result['failed'] and result['recommended_protocol'] == 'http2'
    row = fleet_report.host_row('web2', result)
    assert row['state'] == 'failing' and row['protocol'] == 'http2'
    assert row['failing'] == ['quic_ipv4', 'quic_ipv6']
    assert row['cells']['quic_ipv4'] == {'state': 'failed', 'text': '0/4', 'errors': {'timeout': 4}}
    assert row['cells']['tls_ipv4']['state'] == 'ok'
    assert 'QUIC 7844 IPv4: 0/4 answered, 4 timeout' in row['problems']
    # The probe's to_open data: the plan's UDP rule, both families.
    assert row['to_open'] == [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844,
                               'destinations': UDP_OPEN}]
    assert row['unmet'] == result['unmet_requirements'] and row['unmet'][0].startswith('quic: ')
    assert any(p.startswith('requirement not met: quic: quic udp/7844 timeout: 198.51.100.11') and 'To fix' not in p
               for p in row['problems'])


def test_quic_blocked_with_http2_working_is_degraded_not_failing():
    row = fleet_report.host_row('web4', probed(udp_dropped))
    assert row['state'] == 'degraded' and row['protocol'] == 'http2' and row['unmet'] == []
    assert row['to_open'] == [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844,
                               'destinations': UDP_OPEN}]
    assert {k: v['value'] for k, v in row['settings'].items()} == {'protocol': 'http2', 'edge_ip_version': 'auto'}
    assert fleet_report.settings_line(row['settings']) == '--protocol http2 --edge-ip-version auto'


def test_some_addresses_answering_is_partial_and_failing():
    row = fleet_report.host_row('web3', probed(region2_quic_refused))
    assert row['cells']['quic_ipv4'] == {'state': 'partial', 'text': '2/4', 'errors': {'refused': 2}}
    assert row['cells']['quic_ipv6'] == {'state': 'partial', 'text': '2/3', 'errors': {'refused': 1}}
    # QUIC still works (region1), so no requirement is unmet; what failed is still worth opening...
    assert row['protocol'] == 'quic' and row['unmet'] == [] and [e['protocol'] for e in row['to_open']] == ['udp']
    # ...and the host is not healthy: fewer regions, and the report says which columns.
    assert row['state'] == 'degraded' and row['failing'] == ['quic_ipv4', 'quic_ipv6']


def test_a_blocked_family_fails_only_its_columns():
    row = fleet_report.host_row('h', probed(ipv6_blocked))
    assert row['protocol'] == 'quic'
    assert [c for c, cell in row['cells'].items() if cell['state'] == 'failed'] == [
        'tcp_ipv6', 'tls_ipv6', 'quic_ipv6', 'api_ipv6']
    assert row['cells']['api_ipv6'] == {'state': 'failed', 'text': '0/1', 'errors': {'unreachable': 1}}
    assert all(cell['state'] in ('ok', 'skipped') for c, cell in row['cells'].items() if c.endswith('ipv4') or c == 'dns')
    # Only IPv6 is blocked: only IPv6 addresses to open, not the IPv4 ones that work.
    assert row['to_open'] == [
        {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'destinations': ['2001:db8:e::80/128']},
        {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844,
         'destinations': ['2001:db8:e::11/128', '2001:db8:e::12/128', '2001:db8:e::21/128']},
        {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844,
         'destinations': ['2001:db8:e::11/128', '2001:db8:e::12/128', '2001:db8:e::21/128']}]


def test_nothing_answers_recommends_none_and_names_every_fix():
    result = probed(nothing_answers, require=['any_tunnel', 'api', 'update'])
    row = fleet_report.host_row('h', result)
    assert row['protocol'] == 'none' and row['state'] == 'failing'
    assert len(row['to_open']) == 4, row['to_open']  # TCP 7844, UDP 7844, TCP 443 api, TCP 443 update
    assert {'purpose': 'update', 'protocol': 'tcp', 'port': 443, 'destinations': ['198.51.100.90/32']} in row['to_open']
    assert row['settings']['protocol']['value'] is None


def test_an_ipv4_only_host_skips_the_ipv6_columns():
    row = fleet_report.host_row('v4only', probed(families=['ipv4']))
    assert row['state'] == 'ok'
    assert {cell['state'] for c, cell in row['cells'].items() if c.endswith('_ipv6')} == {'skipped'}
    assert row['cells']['dns']['text'] == '7/7'


def test_checks_left_out_are_skipped_not_failed():
    plan = dict(PLAN, endpoints=PLAN['endpoints'][:2])
    row = fleet_report.host_row('h', probed(plan=plan, families=['ipv4']))
    assert row['cells']['api_ipv4']['state'] == 'skipped' and row['cells']['update_ipv4']['state'] == 'skipped'
    assert row['state'] == 'ok'


def test_dns_unresolvable_and_drift_make_the_dns_cell_partial():
    answers = _answers(PLAN, BOTH, unresolvable=[('api.cloudflare.com', 'A')],
                       extra_a={(R1, 'A'): ['198.51.100.99']})
    row = fleet_report.host_row('h', probed(answers=answers, require=['any_tunnel', 'dns']))
    assert row['cells']['dns'] == {'state': 'partial', 'text': '10/11, 1 drift'}
    assert row['state'] == 'failing' and 'dns' in row['failing']
    assert 'DNS: 192.0.2.53 answered SERVFAIL' in row['problems']
    assert 'DNS: this host resolves %s to 198.51.100.99, which the plan lacks' % R1 in row['problems']
    # The unmet dns requirement repeats the finding: it is not listed twice.
    assert sum('SERVFAIL' in problem for problem in row['problems']) == 1


def test_no_resolver_fails_dns():
    answers = [dict(a, ok=False, answers=[], error_kind='no_nameserver', message='no nameserver in resolv.conf')
               for a in _answers(PLAN, ['ipv4'])]
    row = fleet_report.host_row('h', probed(families=['ipv4'], nameservers=(), answers=answers))
    assert row['cells']['dns'] == {'state': 'failed', 'text': 'no resolver'}
    # The tunnel still works by address and no requirement asks for DNS: degraded, not failing.
    assert row['state'] == 'degraded'
    failing = fleet_report.host_row('h', probed(families=['ipv4'], nameservers=(), answers=answers, require=['dns']))
    assert failing['state'] == 'failing'


@pytest.mark.parametrize('result, message', [
    (None, 'no probe result'),
    ({'unreachable': True, 'msg': 'Failed to connect to the host via ssh'}, 'unreachable: Failed to connect'),
    ({'skipped': True, 'skip_reason': 'Conditional result was False', 'changed': False},
     'not probed: the probe task was skipped (Conditional result was False)'),
    ({'failed': True, 'msg': 'plan: version 2 is not an egress plan'}, 'failed before probing: plan: version 2'),
    ({'changed': False, 'results': [{'item': 1}]}, 'not an edge_probe result'),
    ('not a dict', 'no probe result'),
])
def test_hosts_without_results_are_unreachable_with_the_reason(result, message):
    row = fleet_report.host_row('db1', result)
    assert row['state'] == 'unreachable' and message in row['message']
    assert row['protocol'] is None and row['failing'] == []
    assert {cell['state'] for cell in row['cells'].values()} == {'unreachable'}


def test_a_probe_that_failed_with_results_is_failing_not_unreachable():
    row = fleet_report.host_row('h', probed(nothing_answers))
    assert row['state'] == 'failing' and row['cells']['tcp_ipv4']['state'] == 'failed'


# ------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------

def test_report_totals_protocols_columns_and_plan():
    report = report_of()
    assert report['totals'] == {'hosts': 6, 'ok': 2, 'degraded': 1, 'failing': 1, 'unreachable': 2, 'drifted': 0}
    assert report['protocols'] == {'http2': 1, 'quic': 3}
    # Worst first, in the order given within a state.
    assert [row['host'] for row in report['rows']] == ['web2', 'db1', 'db2', 'web3', 'web1', 'v4only']
    assert [row['why'] for row in report['rows']][:2] == [
        'requirement not met: quic: quic udp/7844 timeout: 198.51.100.11, 198.51.100.12, 2001:db8:e::11, 2001:db8:e::12, '
        '198.51.100.21, 198.51.100.22, 2001:db8:e::21', report['rows'][1]['message']]
    # update_ipv6 was probed on no host: no column for it.
    assert [c['id'] for c in report['columns']] == [
        'dns', 'tcp_ipv4', 'tls_ipv4', 'quic_ipv4', 'api_ipv4', 'update_ipv4', 'tcp_ipv6', 'tls_ipv6', 'quic_ipv6',
        'api_ipv6']
    assert all(list(row['cells']) == [c['id'] for c in report['columns']] for row in report['rows'])
    assert report['plan'] == {'source': 'dns', 'resolved_at': '2026-11-27T10:00:00Z', 'region': 'global',
                              'generation': 'v2'}


def test_an_ipv4_only_fleet_has_no_ipv6_columns_and_no_plan():
    report = report_of([('a', probed(families=['ipv4'])), ('b', probed(udp_dropped, families=['ipv4']))], with_plan=False)
    assert [c['family'] for c in report['columns']] == [None] + ['ipv4'] * 5
    assert report['plan'] is None and report['totals'] == {'hosts': 2, 'ok': 1, 'degraded': 1, 'failing': 0,
                                                           'unreachable': 0, 'drifted': 0}


def test_stats_are_compact_and_json_able():
    stats = fleet_report.fleet_stats(report_of())
    assert json.loads(json.dumps(stats)) == stats
    assert stats['totals'] == {'hosts': 6, 'ok': 2, 'degraded': 1, 'failing': 1, 'unreachable': 2, 'drifted': 0}
    assert stats['hosts']['web1'] == {'state': 'ok', 'protocol': 'quic', 'failing': [], 'to_open': [],
                                      'settings': {'protocol': 'quic', 'edge_ip_version': 'auto'}}
    assert stats['hosts']['web2'] == {
        'state': 'failing', 'protocol': 'http2', 'failing': ['quic_ipv4', 'quic_ipv6'],
        'settings': {'protocol': 'http2', 'edge_ip_version': 'auto'},
        'to_open': [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844,
                     'destinations': UDP_OPEN}]}
    assert stats['hosts']['v4only']['settings'] == {'protocol': 'quic', 'edge_ip_version': '4'}
    assert stats['hosts']['db1']['state'] == 'unreachable' and 'Connection refused' in stats['hosts']['db1']['message']
    assert 'cells' not in json.dumps(stats)


# ------------------------------------------------------------------------------------------------
# renderings
# ------------------------------------------------------------------------------------------------

def _table_rows(markdown):
    """The cells of each table row (header first, without the delimiter row), split where Markdown splits them."""
    return [[cell.strip() for cell in re.split(r'(?<!\\)\|', line)[1:-1]]
            for line in markdown.splitlines() if line.startswith('| ') and not line.startswith('| --- |')]


def test_markdown_has_the_totals_a_row_per_host_and_what_to_fix():
    text = fleet_report.render_markdown(report_of())
    assert '**6 hosts: 2 ok, 1 degraded, 1 failing, 2 unreachable**' in text
    assert 'Egress plan from DNS, resolved at 2026-11-27T10:00:00Z (region global, generation v2)' in text
    header, *rows = _table_rows(text)
    assert len(header) == 5 + 10 and header[:6] == ['Host', 'State', 'Why', 'Protocol', 'cloudflared settings', 'DNS']
    assert header[11] == 'TCP 7844 IPv6'
    assert len(rows) == 6 and all(len(row) == len(header) for row in rows)
    assert '| --- |' + ' --- |' * 14 in text
    by_host = dict((row[0], dict(zip(header, row))) for row in rows)
    assert by_host['db1']['Why'].startswith('unreachable: ') and by_host['web1']['Why'] == ''
    web2 = dict(zip(header, next(row for row in rows if row[0] == 'web2')))
    assert web2['State'] == '❌ failing' and web2['QUIC 7844 IPv4'] == '❌ 0/4' and web2['TLS 7844 IPv4'] == '✅ 4/4'
    assert web2['cloudflared settings'] == '--protocol http2 --edge-ip-version auto'
    assert by_host['web3']['State'] == '⚠️ degraded'
    assert '- cloudflared --protocol http2: QUIC (UDP 7844) got no answer, HTTP/2 (TCP 7844) did' in text
    assert '### web3: ⚠️ degraded' in text
    assert by_host['v4only']['QUIC 7844 IPv6'] == '➖' and by_host['db1']['DNS'] == '⛔'
    assert '### web2: ❌ failing' in text
    assert '- **To open:** ' + UDP_OPEN_LINE in text
    assert '### db2: ⛔ unreachable' in text and '### web1' not in text


def test_markdown_escapes_what_would_break_the_table():
    hostile = {'unreachable': True, 'msg': 'a | b\nc <img src=x> *d*'}
    text = fleet_report.render_markdown(report_of([('evil|host_1', hostile), ('ok', probed())]))
    rows = _table_rows(text)
    assert len(rows) == 3 and all(len(row) == len(rows[0]) for row in rows), rows
    assert rows[1][0] == r'evil\|host\_1'
    assert r'a \| b c \<img src=x\> \*d\*' in text and not re.search(r'(?<!\\)<', text)


def test_a_plan_from_the_published_list_is_called_out():
    text = fleet_report.render_markdown(report_of([('web1', probed())], plan=dict(PLAN, source='catalog')))
    assert "Egress plan from Cloudflare's published list, resolved at 2026-11-27T10:00:00Z" in text
    assert 'DNS failed when the plan was made' in text


def test_markdown_of_a_healthy_fleet_says_nothing_to_fix():
    text = fleet_report.render_markdown(report_of([('web1', probed())]))
    assert 'nothing to fix' in text and '**1 host: 1 ok, 0 degraded, 0 failing, 0 unreachable**' in text


class Html5Checker(html.parser.HTMLParser):
    """Enough of an HTML checker for a generated page: every element closed in order, and what it refers to."""

    VOID = {'meta', 'link', 'br', 'hr', 'img', 'input', 'source', 'wbr', 'col'}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.attributes, self.text, self.doctype = [], [], [], [], [], None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append('unexpected </%s> at %s' % (tag, self.getpos()))

    def handle_data(self, data):
        self.text.append(data)


def parsed(page):
    checker = Html5Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    return checker


def test_html_is_a_self_contained_html5_page():
    page = fleet_report.render_html(report_of())
    checker = parsed(page)
    assert page.startswith('<!doctype html>\n<html lang="en">') and checker.doctype == 'doctype html'
    assert ('meta', {'charset': 'utf-8'}) in checker.attributes and checker.tags.count('title') == 1
    assert 'script' not in checker.tags and 'link' not in checker.tags and 'img' not in checker.tags
    for tag, attributes in checker.attributes:
        for name in ('src', 'href', 'action'):
            assert not attributes.get(name) or attributes[name].startswith('#'), (tag, attributes)
    assert 'http:' not in page and 'https:' not in page and 'url(' not in page and '@import' not in page
    # The policy allows exactly the inline style, by its hash.
    css = re.search(r'<style>(.*?)</style>', page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    policy = next(a['content'] for t, a in checker.attributes if a.get('http-equiv') == 'Content-Security-Policy')
    assert "default-src 'none'" in policy and "style-src 'sha256-%s'" % digest in policy


def test_html_shows_totals_badges_rows_and_fixes():
    checker = parsed(fleet_report.render_html(report_of()))
    text = ''.join(checker.text)
    assert '6 hosts' in text and '2 ok' in text and '1 degraded' in text and '1 failing' in text and '2 unreachable' in text
    rows = [a for t, a in checker.attributes if t == 'tr' and a.get('class')]
    assert [a['class'] for a in rows] == ['failing', 'unreachable', 'unreachable', 'degraded', 'ok', 'ok']
    settings = [a for t, a in checker.attributes if t == 'td' and a.get('class') == 'settings']
    assert len(settings) == 6 and '--protocol http2 --edge-ip-version auto' in text
    cells = [a for t, a in checker.attributes if t == 'td' and 'cell' in (a.get('class') or '')]
    assert len(cells) == 6 * 10
    assert {'class': 'cell failed', 'title': 'web2 QUIC 7844 IPv4: none answered: 4 timeout'} in cells
    assert 'To open: ' + UDP_OPEN_LINE in text
    assert 'Failed to connect to the host via ssh' in text
    # A failing host's name links to its section; the section exists.
    links = [a['href'] for t, a in checker.attributes if t == 'a']
    ids = {a['id'] for t, a in checker.attributes if a.get('id')}
    assert links == ['#host-0', '#host-1', '#host-2', '#host-3'] and all(link[1:] in ids for link in links)


def test_html_escapes_every_string():
    hostile = '<script>alert("x")</script>&'
    result = probed(udp_dropped, require=['any_tunnel', 'quic'])
    result['recommendation_reason'] = hostile
    report = report_of([(hostile, result), ('"quoted" host', {'unreachable': True, 'msg': hostile})])
    page = fleet_report.render_html(report)
    checker = parsed(page)
    assert 'script' not in checker.tags and '<script>' not in page
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;' in page
    assert ''.join(checker.text).count(hostile) >= 3  # the row, its section heading, the reason, the message


def test_json_round_trips_the_report():
    report = report_of()
    text = fleet_report.render_json(report)
    assert json.loads(text) == report and text.endswith('}\n')
    assert fleet_report.render_json(report) == text


@pytest.mark.parametrize('render', [fleet_report.render_markdown, fleet_report.render_html, fleet_report.render_json])
def test_same_content_ignores_only_time_stamps(render):
    hosts = fleet()
    first = render(fleet_report.fleet_report([fleet_report.host_row(h, r) for h, r in hosts], '2026-11-27T10:05:00Z', PLAN))
    rerun_plan = dict(PLAN, resolved_at='2026-11-27T11:00:00Z')
    rerun = render(fleet_report.fleet_report([fleet_report.host_row(h, r) for h, r in hosts], '2026-11-27T11:05:00Z', rerun_plan))
    assert first != rerun and fleet_report.same_content(first, rerun)
    hosts[0] = ('web1', probed(udp_dropped))
    changed = render(fleet_report.fleet_report([fleet_report.host_row(h, r) for h, r in hosts], '2026-11-27T11:05:00Z', PLAN))
    assert not fleet_report.same_content(first, changed)
    assert not fleet_report.same_content(None, first)


def test_a_damaged_result_is_a_row_not_a_traceback():
    """Found by the bad-input suite: wrong types inside a registered result (hand-made, or set_fact gone wrong)."""
    damaged = {'summary': [{'purpose': 'tunnel', 'check': 'tcp', 'family': 'ipv4', 'ok': 'x', 'total': None}],
               'results': 5, 'unmet_requirements': 3, 'dns': {'findings': 7, 'answers': 'none'},
               'recommended_protocol': {'quic': 1}, 'recommendation_reason': ['why']}
    row = fleet_report.host_row('web1', damaged)
    assert row['protocol'] is None and row['unmet'] == [] and row['state'] == 'ok'
    report = fleet_report.fleet_report([row], '2026-11-28T00:00:00Z')
    assert report['totals']['hosts'] == 1
    assert 'web1' in fleet_report.render_markdown(report)


# ------------------------------------------------------------------------------------------------
# drift
# ------------------------------------------------------------------------------------------------

def test_drift_counts_new_and_gone_blocks_per_purpose_as_the_firewall_stores_them():
    # ufw and firewalld store a host without /32; nftables collapses into blocks: all compare as address space.
    applied = {'tunnel': ['198.51.100.11', '198.51.100.12/31', '198.51.100.99', '2001:db8:e::11'],
               'api': ['198.51.100.80/32', '2001:db8:e::80/128'], 'dns': ['10.0.0.2']}
    drift = fleet_report.plan_drift(applied, PLAN)
    # The plan has no update purpose applied here (left out by the role: not drift); tunnel lost .99 and gained nothing.
    assert drift == {'new': 0, 'gone': 1, 'purposes': ['tunnel'], 'text': '+0/\u22121'}
    applied['tunnel'] = ['198.51.100.11/32', '2001:db8:e::11/128']
    assert fleet_report.plan_drift(applied, PLAN) == {'new': 1, 'gone': 0, 'purposes': ['tunnel'], 'text': '+1/\u22120'}
    # nftables lists an unaligned run of an interval set as a range.
    applied['tunnel'] = ['198.51.100.11-198.51.100.13', '2001:db8:e::11']
    assert fleet_report.plan_drift(applied, PLAN)['text'] == '+0/\u22120'
    assert fleet_report.plan_drift({}, PLAN) is None and fleet_report.plan_drift(None, PLAN) is None


def test_a_host_whose_firewall_drifted_is_drifted_with_a_column_and_a_figure():
    applied = {'tunnel': ['198.51.100.11/32', '2001:db8:e::11/128'], 'api': ['198.51.100.80/32', '2001:db8:e::80/128']}
    rows = [fleet_report.host_row('web1', probed(), PLAN, applied), fleet_report.host_row('web2', probed(), PLAN, None)]
    report = fleet_report.fleet_report(rows, '2026-11-27T10:05:00Z', PLAN)
    by_host = dict((row['host'], row) for row in report['rows'])
    assert by_host['web1']['state'] == 'drifted' and by_host['web1']['drift']['text'] == '+1/\u22120'
    assert by_host['web2']['state'] == 'ok' and by_host['web2']['drift'] is None
    assert report['totals']['drifted'] == 1 and fleet_report.totals_line(report).endswith(', 1 drifted')
    assert fleet_report.fleet_stats(report)['hosts']['web1']['drift'] == {'new': 1, 'gone': 0, 'purposes': ['tunnel'],
                                                                          'text': '+1/\u22120'}
    header, *table = _table_rows(fleet_report.render_markdown(report))
    assert header[3] == 'Drift' and dict(zip(header, table[0]))['Drift'] == '+1/−0 (tunnel)'
    assert '<td class="drift">+1/−0 (tunnel)</td>' in fleet_report.render_html(report)


def test_a_failed_change_shows_in_the_firewall_column_and_the_why():
    """The site playbook marks its probe result with what the role did; a failed change is a failed cell up front."""
    failed = dict(probed(), failed=True, msg='egress_firewall on h (ufw): ufw is installed but inactive.',
                  firewall_change='failed')
    rows = [fleet_report.host_row('h', failed), fleet_report.host_row('g', dict(probed(), firewall_change='changed'))]
    report = fleet_report.fleet_report(rows, '2026-11-27T10:05:00Z', PLAN)
    by_host = dict((row['host'], row) for row in report['rows'])
    assert by_host['h']['firewall'] == {'state': 'failed', 'text': 'failed'} and by_host['h']['state'] == 'failing'
    assert by_host['h']['why'] == 'egress_firewall on h (ufw): ufw is installed but inactive.'
    assert by_host['g']['firewall'] == {'state': 'ok', 'text': 'changed'}
    header, *table = _table_rows(fleet_report.render_markdown(report))
    assert header[3] == 'Firewall' and [dict(zip(header, row))['Firewall'] for row in table] == ['❌ failed', '✅ changed']
    assert 'title="h Firewall: the change failed"' in fleet_report.render_html(report)
    # A check run (no change tried) has no Firewall column.
    assert 'Firewall' not in fleet_report.render_markdown(fleet_report.fleet_report(
        [fleet_report.host_row('g', probed())], '2026-11-27T10:05:00Z', PLAN))


def test_what_failed_comes_from_the_probes_records_and_other_lines_stay_as_they_are():
    record = {'requirement': 'quic', 'failed': 'quic udp/7844 timeout: 198.51.100.11',
              'to_open': ['open outbound UDP 7844 to 198.51.100.11/32 (tunnel)']}
    message = probe_report.unmet_message(record)
    origins = 'origins: 10.1.2.3 port 8080 (app.internal, config.yml rule 1): blocked'
    assert fleet_report._what_failed([message, origins], [record]) == ['quic: quic udp/7844 timeout: 198.51.100.11', origins]
    # A damaged record (to_open not a list of strings) is not trusted: the message stays whole.
    assert fleet_report._what_failed([message], [dict(record, to_open='x')]) == [message]
    assert fleet_report._what_failed([message], 'nonsense') == [message]
