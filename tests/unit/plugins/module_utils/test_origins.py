# -*- coding: utf-8 -*-
"""origins: the options, the config read through egress_module.with_origins, and the check after a change."""

from __future__ import annotations

import socket

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_module, egress_request, origins

TUNNEL = [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.10/32'], 'ipv6': []}]
CONFIG = """ingress:
  - hostname: app.example.com
    service: http://app.internal:8080
  - hostname: ssh.example.com
    service: ssh://10.1.2.4
  - hostname: warp.example.com
    service: http://localhost:3000
  - service: http_status:404
"""


def fake_dns(table):
    def getaddrinfo(host, port, family=0, kind=0):
        if host not in table:
            raise socket.gaierror(-2, 'Name or service not known')
        return [(socket.AF_INET6 if ':' in a else socket.AF_INET, kind, 6, '', (a, 0)) for a in table[host]]
    return getaddrinfo


def request(**params):
    return egress_request.build(dict({'rules': TUNNEL, 'default_deny': True}, **params), 'nftables')


def with_origins(req, files, dns=None):
    return egress_module.with_origins(req, None, read_text=files.get, exists=lambda p: p in files,
                                      home_of={'root': '/root'}.get,
                                      getaddrinfo=fake_dns({'app.internal': ['10.1.2.3', 'fd00:1::3']} if dns is None else dns))


@pytest.mark.parametrize('params, words', [
    ({'origins': [{'host': 'a', 'port': 0}]}, ['origins[0].port=0']),
    ({'origins': [{'host': 'http://a', 'port': 80}]}, ['origins[0].host=', 'scheme']),
    ({'origins': [{'host': '0.0.0.0/0', 'port': 80}]}, ['origins[0].host=', 'everything']),
    ({'origins': [{'host': 'a', 'port': 80, 'protocol': 'icmp'}]}, ['origins[0].protocol=']),
    ({'origins': [{'host': 'a', 'port': 80, 'ports': [1]}]}, ['origins[0]=', 'unknown key(s) ports']),
    ({'private_networks': [{'network': '10.0.0.1/8', 'ports': [80]}]}, ['private_networks[0].network=', 'host bits']),
    ({'private_networks': [{'network': '10.0.0.0/8'}]}, ['private_networks[0].ports=None']),
    ({'cloudflared_config': 'etc/cloudflared.yml'}, ['cloudflared_config=', 'absolute path']),
])
def test_bad_options_name_option_and_value(params, words):
    with pytest.raises(egress_request.RequestError) as raised:
        request(**params)
    for word in words:
        assert word in str(raised.value)


def test_config_in_its_standard_place_becomes_origin_rules():
    req, verify = with_origins(request(), {'/etc/cloudflared/config.yml': CONFIG})
    origin_rules = [r for r in req.rules if r.purpose == 'origin']
    assert origin_rules == [egress_request.Rule('origin', 'tcp', 8080, ('10.1.2.3/32',), ('fd00:1::3/128',)),
                            egress_request.Rule('origin', 'tcp', 22, ('10.1.2.4/32',), ())]
    report = req.origin_report
    assert report['config']['path'] == '/etc/cloudflared/config.yml'
    assert [(a['host'], a['addresses'], a['port']) for a in report['allowed']] == [
        ('app.internal', ['10.1.2.3/32', 'fd00:1::3/128'], 8080), ('10.1.2.4', ['10.1.2.4/32'], 22)]
    assert report['allowed'][0]['source'] == ('/etc/cloudflared/config.yml ingress[0] (hostname app.example.com) '
                                              '(http)')
    assert isinstance(verify, origins.OriginCheck)


def test_variables_private_networks_and_none():
    req, dummy = with_origins(request(cloudflared_config='none', origins=[{'host': '10.5.0.0/24', 'port': 5432}],
                                      private_networks=[{'network': '10.8.0.0/16', 'ports': [53], 'protocol': 'udp'}]),
                              {'/etc/cloudflared/config.yml': CONFIG})
    assert [r for r in req.rules if r.purpose == 'origin'] == [
        egress_request.Rule('origin', 'tcp', 5432, ('10.5.0.0/24',), ()),
        egress_request.Rule('origin', 'udp', 53, ('10.8.0.0/16',), ())]
    assert req.origin_report['allowed'][1]['source'] == 'variable private_networks[0]'


def test_no_default_deny_reads_nothing():
    req, verify = with_origins(request(default_deny=False), {'/etc/cloudflared/config.yml': 'not: [yaml'})
    assert verify is None and not [r for r in req.rules if r.purpose == 'origin']


def test_unreadable_config_and_unknown_names_fail_before_any_change():
    with pytest.raises(origins.OriginError, match=r'/etc/cloudflared/config.yml ingress\[0\]: .*no path'):
        with_origins(request(), {'/etc/cloudflared/config.yml': 'ingress:\n  - service: http://a/b\n'})
    with pytest.raises(origins.OriginError, match=r'ingress\[0\] \(hostname app.example.com\) \(http\): cannot resolve '
                                                  r'app.internal'):
        with_origins(request(), {'/etc/cloudflared/config.yml': CONFIG}, dns={})
    with pytest.raises(origins.OriginError, match='cannot read /srv/none.yml'):
        with_origins(request(cloudflared_config='/srv/none.yml'), {})


def test_warp_routing_without_private_networks_warns():
    req, dummy = with_origins(request(), {'/etc/cloudflared/config.yml': 'warp-routing: {}\n'})
    assert 'private-network traffic' in req.origin_report['warnings'][0]


@pytest.mark.parametrize('before, after, ok, word', [
    (None, 'connected', True, 'reachable'),
    ('connected', 'refused', False, 'connected before the change'),
    ('refused', 'refused', True, 'refused by the origin'),
    (None, 'refused', True, 'refused by the origin'),
    ('connected', 'blocked: EHOSTUNREACH', False, 'EHOSTUNREACH'),
    ('blocked: no answer in 3s', 'blocked: no answer in 3s', True, 'unreachable before the change too'),
])
def test_judge(before, after, ok, word):
    got_ok, state, verdict = origins.judge(before, after)
    assert state in ('reachable', 'refused', 'unreachable', 'blocked') and (state == 'blocked') is not ok
    assert got_ok is ok and word in verdict


def test_origin_check_with_real_sockets():
    """A listener (connected), a closed port (refused: the kernel's RST), before and after."""
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    closed = socket.socket()
    closed.bind(('127.0.0.1', 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    allowed = [{'host': 'x', 'addresses': ['127.0.0.1/32'], 'port': listener.getsockname()[1], 'protocol': 'tcp',
                'source': 's'},
               {'host': 'y', 'addresses': ['127.0.0.1/32'], 'port': closed_port, 'protocol': 'tcp', 'source': 's'},
               {'host': 'z', 'addresses': ['10.0.0.0/8'], 'port': 80, 'protocol': 'tcp', 'source': 's'},
               {'host': 'u', 'addresses': ['127.0.0.1/32'], 'port': 53, 'protocol': 'udp', 'source': 's'}]
    report = {}
    check = origins.OriginCheck(allowed, timeout=1, report=report)
    check.before_change()
    ok, output, message = check()
    listener.close()
    assert ok and message == '' and output is None  # no probe: the rows are the origins report's
    assert [(row['checked'], row.get('ok'), row['state']) for row in report['verification']] == [
        (True, True, 'reachable'), (True, True, 'refused'), (False, None, 'not checked'), (False, None, 'not checked')]
    # the listener is gone now: connected before, refused after = blocked by the change
    check.before = {('127.0.0.1', allowed[0]['port']): 'connected'}
    ok, output, message = check()
    assert not ok and 'origins: 127.0.0.1 port %d (x, s): blocked' % allowed[0]['port'] in message


def test_verify_origins_are_checked_not_allowed():
    req, verify = egress_module.with_origins(request(cloudflared_config='none'), None, read_text={}.get,
                                             exists=lambda p: False, home_of={}.get,
                                             verify_origins=[{'host': '10.7.0.1', 'port': 443}])
    assert not [r for r in req.rules if r.purpose == 'origin']
    assert isinstance(verify, origins.OriginCheck) and verify.allowed[0]['source'] == 'variable verify.origins[0]'
    with pytest.raises(origins.OriginError, match=r'verify.origins\[0\].port=0'):
        egress_module.with_origins(request(), None, verify_origins=[{'host': 'a', 'port': 0}])


def test_without_a_change_each_outcome_is_its_own_baseline():
    """A run that changed nothing (no before_change) cannot blame the firewall for an origin that is down."""
    allowed = [{'host': 'x', 'addresses': ['10.0.0.1/32'], 'port': 80, 'protocol': 'tcp', 'source': 's'}]
    check = origins.OriginCheck(allowed, connector=lambda address, port, timeout: 'blocked: no answer in 1s')
    ok, output, message = check()
    assert ok and 'unreachable before the change too' in check.report['verification'][0]['verdict']
    check.before_change()
    check.connector = lambda address, port, timeout: 'connected'
    assert check()[0]


def test_probe_rows_say_what_one_connect_cannot_tell():
    allowed = [{'host': 'x', 'addresses': ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32', '10.1.0.0/16'], 'port': 80,
                'protocol': 'tcp', 'source': 's'}]
    rows = origins.probe_rows(allowed, {('10.0.0.1', 80): 'connected', ('10.0.0.2', 80): 'refused',
                                        ('10.0.0.3', 80): 'blocked: EHOSTUNREACH'})
    assert [(r['state'], r.get('ok')) for r in rows] == [('reachable', True), ('refused', True), ('blocked', False),
                                                         ('not checked', None)]
    assert 'cannot tell' in rows[1]['verdict'] and rows[2]['verdict'] == 'blocked: EHOSTUNREACH'


def test_edge_probe_probes_origins_once_each(tmp_path):
    """edge_probe with origins, in this process against loopback listeners: reachable, refused; a bad one refused
    before anything is contacted."""
    from tests.support.module_runner import run_module  # pylint: disable=import-outside-toplevel
    edge = socket.socket()
    edge.bind(('127.0.0.1', 0))
    edge.listen(8)
    closed = socket.socket()
    closed.bind(('127.0.0.1', 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        target = {'address': '127.0.0.1', 'port': edge.getsockname()[1], 'check': 'tcp'}
        result = run_module('edge_probe', {'targets': [target], 'timeout': 1, 'require': [],
                                           'origins': [{'host': '127.0.0.1', 'port': edge.getsockname()[1]},
                                                       {'host': 'localhost', 'port': closed_port}]})
        assert not result.get('failed'), result
        assert [(r['host'], r['state']) for r in result['origins'] if r['address'] == '127.0.0.1/32'] == [
            ('127.0.0.1', 'reachable'), ('localhost', 'refused')]
        bad = run_module('edge_probe', {'targets': [target], 'origins': [{'host': 'http://x', 'port': 80}]})
        assert bad['failed'] and "edge_probe: origins[0].host='http://x'" in bad['msg']
        config = tmp_path / 'config.yml'
        config.write_text('ingress:\n  - hostname: a.example\n    service: http://10.1.2.3/app\n')
        bad = run_module('edge_probe', {'targets': [target], 'cloudflared_config': str(config)})
        assert bad['failed'] and '%s ingress[0] (hostname a.example)' % config in bad['msg'], bad
        config.write_text('ingress:\n  - service: http://localhost:8080\n')  # loopback: nothing to probe
        fine = run_module('edge_probe', {'targets': [target], 'require': [], 'cloudflared_config': str(config)})
        assert not fine.get('failed') and 'origins' not in fine, fine
    finally:
        edge.close()


def test_windows_takes_origins_by_address_and_refuses_names_and_origin_checks():
    """The Windows action: the same request, origins by address/CIDR as purpose origin rules (no host resolution
    on the controller); a name and verify.origins are refused naming the option."""
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall as wf  # pylint: disable=C0415
    from tests.unit.plugins.plugin_utils.test_windows_firewall import params  # pylint: disable=import-outside-toplevel
    base = params(default_deny=True, dns_servers=['203.0.113.53'], rules=TUNNEL)
    request, dummy = wf.build_request(dict(base, origins=[{'host': '10.1.2.3', 'port': 8080}],
                                           private_networks=[{'network': '10.8.0.0/16', 'ports': [443]}]))
    assert [r for r in wf.desired_rules(request) if r['purpose'] == 'origin'] == [
        {'purpose': 'origin', 'protocol': 'tcp', 'port': 443, 'addresses': ['10.8.0.0/16'],
         'display_name': 'tunnelwall cloudflared: origin tcp/443'},
        {'purpose': 'origin', 'protocol': 'tcp', 'port': 8080, 'addresses': ['10.1.2.3/32'],
         'display_name': 'tunnelwall cloudflared: origin tcp/8080'}]
    assert 'not read on Windows' in request.origin_report['notes'][0]
    with pytest.raises(wf.RuleError, match=r"variable origins\[0\]: host='app.internal': on Windows give origins"):
        wf.build_request(dict(base, origins=[{'host': 'app.internal', 'port': 80}]))
    with pytest.raises(wf.RuleError, match='verify: origins are not checked on Windows yet'):
        wf.verify_params({'plan': {}, 'origins': [{'host': '10.1.2.3', 'port': 80}]})


def test_egress_firewall_info_resolves_the_origins_as_the_firewall_modules_do(tmp_path):
    """egress_firewall_info's fresh origins (for drift): the same config reading and resolution as with_origins,
    an error instead of a failure, and nothing at all unless asked."""
    from ansible_collections.tunnelwall.cloudflared.plugins.modules import egress_firewall_info as info  # pylint: disable=C0415
    config = tmp_path / 'config.yml'
    config.write_text('ingress:\n  - hostname: a.example\n    service: https://app.internal\n  - service: http_status:404\n')

    def getaddrinfo(host, port, family, kind):
        return {'app.internal': [(2, kind, 6, '', ('10.1.2.3', 0))]}[host]
    asked = {'origins': [{'host': '10.5.0.0/16', 'port': 22}], 'private_networks': None, 'cloudflared_config': str(config)}
    fresh = info.fresh_origins(asked, getaddrinfo=getaddrinfo)
    assert fresh['error'] is None and fresh['config']['path'] == str(config)
    assert [(r['port'], r['ipv4']) for r in fresh['rules']] == [(22, ['10.5.0.0/16']), (443, ['10.1.2.3/32'])]
    req, dummy = egress_module.with_origins(request(origins=asked['origins'], cloudflared_config=str(config)), None,
                                            getaddrinfo=getaddrinfo)
    assert fresh['allowed'] == req.origin_report['allowed']
    assert info.fresh_origins({'origins': None, 'private_networks': None, 'cloudflared_config': 'none'}) is None
    gone = info.fresh_origins(dict(asked, origins=None), getaddrinfo=lambda *a: (_ for _ in ()).throw(socket.gaierror(-2, 'Name or service not known')))
    assert gone['rules'] is None and 'cannot resolve app.internal' in gone['error'], gone
