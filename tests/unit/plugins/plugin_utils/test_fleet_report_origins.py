# -*- coding: utf-8 -*-
"""The fleet report's origins column: from edge_probe's or a firewall module's verification ``origins``."""

from __future__ import annotations

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import origins
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import fleet_report
from tests.unit.plugins.plugin_utils.test_fleet_report import PLAN, probed

APP = {'host': 'app.internal', 'addresses': ['10.1.2.3/32'], 'port': 8080, 'protocol': 'tcp',
       'source': '/etc/cloudflared/config.yml ingress[0] (hostname app.example.com) (http)'}
SSH = {'host': '10.1.2.4', 'addresses': ['10.1.2.4/32'], 'port': 22, 'protocol': 'tcp', 'source': 'variable origins[0]'}
UDP = {'host': '10.8.0.0/16', 'addresses': ['10.8.0.0/16'], 'port': 53, 'protocol': 'udp',
       'source': 'variable private_networks[0]'}


def verified(before, after):
    """A firewall module's verification: the probe's output with the origins check's rows and unmet lines."""
    ok, rows, unmet = origins.check([APP, SSH, UDP], before, after)
    result = probed()
    result.update(origins=rows, unmet_requirements=result['unmet_requirements'] + unmet)
    return result


def test_all_reachable_is_ok_and_the_column_is_shown_only_when_some_host_has_origins():
    result = verified({}, {('10.1.2.3', 8080): 'connected', ('10.1.2.4', 22): 'connected'})
    row = fleet_report.host_row('gw1', result)
    assert row['state'] == 'ok' and row['cells']['origins'] == {'state': 'ok', 'text': '2/2 reachable'}
    report = fleet_report.fleet_report([row, fleet_report.host_row('web1', probed())], '2026-11-27T10:05:00Z', PLAN)
    assert [c['id'] for c in report['columns']][:2] == ['dns', 'origins']
    assert report['rows'][1]['cells']['origins']['state'] == 'skipped'
    assert '| origins |' in fleet_report.render_markdown(report)
    assert '>origins</th>' in fleet_report.render_html(report)
    without = fleet_report.fleet_report([fleet_report.host_row('web1', probed())], '2026-11-27T10:05:00Z', PLAN)
    assert 'origins' not in [c['id'] for c in without['columns']]


def test_a_blocked_origin_fails_the_host_and_names_what_to_open():
    result = verified({('10.1.2.3', 8080): 'connected', ('10.1.2.4', 22): 'refused'},
                      {('10.1.2.3', 8080): ('refused', False), ('10.1.2.4', 22): ('refused', True)})
    row = fleet_report.host_row('gw1', result)
    assert row['state'] == 'failing' and 'origins' in row['failing']
    assert row['cells']['origins']['text'] == '0/2 reachable, 1 refused, 1 blocked'
    assert row['cells']['origins']['state'] == 'partial'
    assert {'purpose': 'origin', 'protocol': 'tcp', 'port': 8080, 'destinations': ['10.1.2.3/32']} in row['to_open']
    problems = [p for p in row['problems'] if 'origins' in p]
    assert problems == ['origins: 0/2 reachable, 1 refused, 1 blocked; blocked 10.1.2.3/32 port 8080 (app.internal, '
                        '/etc/cloudflared/config.yml ingress[0] (hostname app.example.com) (http))']
    report = fleet_report.fleet_report([row], '2026-11-27T10:05:00Z', PLAN)
    assert 'To open:' in fleet_report.render_markdown(report) and '10.1.2.3/32' in fleet_report.render_markdown(report)


def test_edge_probe_rows_refused_is_partial_and_udp_only_is_not_checked():
    result = probed()
    result['origins'] = origins.probe_rows([APP], {('10.1.2.3', 8080): 'refused'})
    assert fleet_report.host_row('gw1', result)['cells']['origins'] == {'state': 'partial',
                                                                        'text': '0/1 reachable, 1 refused'}
    result['origins'] = origins.probe_rows([UDP], {})
    assert fleet_report.host_row('gw1', result)['cells']['origins'] == {'state': 'skipped', 'text': 'not checked'}


def test_origins_drift_from_egress_firewall_info_and_its_error():
    """The check playbook's Drift column covers origins: egress_firewall_info's `origins` (resolved on the host)
    against the firewall's origin rules; origins that cannot be resolved now make the host degraded, naming why."""
    applied = {'tunnel': [r for rule in PLAN['rules'] if rule['purpose'] == 'tunnel' for r in rule['ipv4'] + rule['ipv6']]}
    applied['origin'] = ['10.1.2.3/32']
    fresh = {'rules': [{'purpose': 'origin', 'protocol': 'tcp', 'port': 8080, 'ipv4': ['10.1.2.30/32'], 'ipv6': []}],
             'error': None}
    row = fleet_report.host_row('gw1', probed(), PLAN, applied, fresh)
    assert row['drift']['purposes'] == ['origin'] and row['drift']['text'] == '+1/\u22121', row['drift']
    assert row['state'] == 'drifted'
    moved_back = dict(fresh, rules=[dict(fresh['rules'][0], ipv4=['10.1.2.3/32'])])
    same = fleet_report.host_row('gw1', probed(), PLAN, applied, moved_back)
    assert same['state'] == 'ok' and same['drift']['text'] == '+0/\u22120'
    broken = fleet_report.host_row('gw1', probed(), PLAN, applied, {'rules': None, 'error': 'cannot resolve app'})
    assert broken['state'] == 'degraded' and broken['drift']['text'] == '+0/\u22120'
    assert broken['why'] == 'drift: origins not compared - cannot resolve app (the next site run fails the same way)'
