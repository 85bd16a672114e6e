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
    (None, ('refused', True), True, 'refused by the origin: the SYN left this host'),
    (('connected', True), ('refused', False), False, 'refused by this host itself'),
    (('connected', True), ('refused', False), False, 'it connected before the change'),
    # An earlier deny that still stops an origin the new rules allow: the same before and after, and blocked.
    (('refused', False), ('refused', False), False, 'the same before the change (refused)'),
    (None, ('refused', None), False, "nothing proves it is not this host's firewall"),
    (None, 'refused', False, "nothing proves it is not this host's firewall"),
    (None, ('blocked: no answer in 3s', True), True, "not this host's firewall"),
    (('blocked: no answer in 3s', False), ('blocked: no answer in 3s', False), False, 'the SYN never left this host'),
    (('connected', True), ('blocked: EHOSTUNREACH', None), False, 'EHOSTUNREACH'),
])
def test_judge(before, after, ok, word):
    got_ok, state, verdict = origins.judge(before, after)
    assert state in ('reachable', 'refused', 'unreachable', 'blocked') and (state == 'blocked') is not ok
    assert got_ok is ok and word in verdict, verdict


class FakeWatch(object):
    """conntrack.Watch's interface: which tuples left this host (by destination), None for the rest."""

    def __init__(self, left):
        self.left_by_destination = left
        self.started = self.closed = 0

    def start(self):
        self.started += 1
        return self

    def control(self, family):
        pass

    def left(self, family, source, source_port, destination, destination_port):
        assert source and source_port
        return self.left_by_destination.get((destination, destination_port))

    def close(self):
        self.closed += 1


def test_origin_check_with_real_sockets():
    """A listener (connected), a closed port (refused: the kernel's RST - the SYN left: the origin is down, allowed),
    the same closed port when conntrack saw no SYN leave (a reset made here: blocked), before and after."""
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
    watch = FakeWatch({('127.0.0.1', closed_port): True})
    check = origins.OriginCheck(allowed, timeout=1, report=report, watch=watch)
    check.before_change()
    ok, output, message = check()
    assert watch.started == watch.closed == 2
    assert ok and message == '' and output is None, message  # no probe: the rows are the origins report's
    assert [(row['checked'], row.get('ok'), row['state']) for row in report['verification']] == [
        (True, True, 'reachable'), (True, True, 'refused'), (False, None, 'not checked'), (False, None, 'not checked')]
    # The same refusal, but no SYN left this host: a reset made here, whatever it was before (an earlier deny).
    watch.left_by_destination = {('127.0.0.1', closed_port): False}
    ok, output, message = check()
    assert not ok and 'origins: 127.0.0.1 port %d (y, s): blocked: refused by this host itself' % closed_port in message
    # the listener is gone now: connected before, refused after, conntrack unreadable = blocked
    listener.close()
    watch.left_by_destination = {}
    ok, output, message = check()
    assert not ok and 'origins: 127.0.0.1 port %d (x, s): blocked' % allowed[0]['port'] in message
    assert 'it connected before the change' in message


def test_verify_origins_are_checked_not_allowed():
    req, verify = egress_module.with_origins(request(cloudflared_config='none'), None, read_text={}.get,
                                             exists=lambda p: False, home_of={}.get,
                                             verify_origins=[{'host': '10.7.0.1', 'port': 443}])
    assert not [r for r in req.rules if r.purpose == 'origin']
    assert isinstance(verify, origins.OriginCheck) and verify.allowed[0]['source'] == 'variable verify.origins[0]'
    with pytest.raises(origins.OriginError, match=r'verify.origins\[0\].port=0'):
        egress_module.with_origins(request(), None, verify_origins=[{'host': 'a', 'port': 0}])


def test_without_a_change_an_origin_this_host_blocks_still_fails():
    """A run that changed nothing checks all the same: an origin the rules allow but this host stops is blocked; one
    whose SYN left the host (down, unanswered beyond it) is not this host's firewall."""
    allowed = [{'host': 'x', 'addresses': ['10.0.0.1/32'], 'port': 80, 'protocol': 'tcp', 'source': 's'}]

    def unanswered(address, port, timeout):
        return 'blocked: no answer in 1s', '10.0.0.9', 40000
    check = origins.OriginCheck(allowed, connector=unanswered, watch=FakeWatch({('10.0.0.1', 80): False}))
    ok, output, message = check()
    assert not ok and 'the SYN never left this host' in check.report['verification'][0]['verdict']
    check.watch.left_by_destination = {('10.0.0.1', 80): True}
    assert check()[0] and check.report['verification'][0]['state'] == 'unreachable'
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
    # With connection tracking: a refusal whose SYN left is the origin's, one whose SYN never left is this host's.
    rows = origins.probe_rows([dict(allowed[0], addresses=['10.0.0.1/32'])], {('10.0.0.1', 80): ('refused', True)}) + \
        origins.probe_rows([dict(allowed[0], addresses=['10.0.0.2/32'])], {('10.0.0.2', 80): ('refused', False)})
    assert [(r['state'], r['ok']) for r in rows] == [('refused', True), ('blocked', False)]
    assert 'the origin is down' in rows[0]['verdict'] and 'refused by this host itself' in rows[1]['verdict']


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


class WindowsHost(object):
    """win_firewall_egress' read-only ``origins`` step, answered from a Windows host described here."""

    def __init__(self, service=None, files=None, names=None):
        self.service, self.files, self.names, self.calls = service, files or {}, names or {}, []

    def __call__(self, module, args):
        prepared = args['prepared']
        assert module == 'tunnelwall.cloudflared.win_firewall_egress' and prepared['action'] == 'origins'
        assert set(prepared) == {'action', 'service', 'read', 'resolve'}
        self.calls.append(prepared)
        found = {'service': self.service if prepared['service'] == 'Cloudflared' else None, 'file': None,
                 'resolved': {}, 'unresolved': {}}
        for path in prepared['read']:
            if path in self.files:
                found['file'] = {'path': path, 'text': self.files[path]}
                break
        for name in prepared['resolve']:
            if name in self.names:
                found['resolved'][name] = self.names[name]
            else:
                found['unresolved'][name] = 'No such host is known'
        return {'changed': False, 'origins': found}


WINDOWS_CONFIG = """tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
ingress:
  - hostname: app.example.com
    service: https://app.corp.internal
  - hostname: rdp.example.com
    service: rdp://10.1.2.5
  - service: http_status:404
"""
SYSTEM_PROFILE = 'C:\\Windows\\System32\\config\\systemprofile'


def windows_request(**values):
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall as wf  # pylint: disable=C0415
    from tests.unit.plugins.plugin_utils.test_windows_firewall import params  # pylint: disable=import-outside-toplevel
    return wf, wf.build_request(params(**dict({'default_deny': True, 'dns_servers': ['203.0.113.53'],
                                               'rules': TUNNEL}, **values)))[0]


def test_windows_reads_the_services_config_and_resolves_names_on_the_host():
    """cloudflared_config auto on Windows: the Cloudflared service's account profile (LocalSystem's systemprofile)
    searched as cloudflared does, the file's text parsed here by the Linux parser, its names and the variables'
    resolved on the host - three read-only module calls, then origin rules like on Linux."""
    wf, request = windows_request(origins=[{'host': 'db.corp.internal', 'port': 5432}, {'host': '10.9.0.0/16', 'port': 22}])
    config = SYSTEM_PROFILE + '\\.cloudflared\\config.yml'
    host = WindowsHost(service={'name': 'Cloudflared', 'image_path': 'C:\\Program Files\\cloudflared\\cloudflared.exe',
                                'account': 'LocalSystem', 'profile': SYSTEM_PROFILE, 'cfdpath': None,
                                'program_files_x86': 'C:\\Program Files (x86)'},
                       files={config: WINDOWS_CONFIG},
                       names={'db.corp.internal': ['10.1.2.7'], 'app.corp.internal': ['10.1.2.3', 'fd0a::3%4']})
    result = wf.discover_origins(request, host)
    assert host.calls[0] == {'action': 'origins', 'service': 'Cloudflared', 'read': [], 'resolve': ['db.corp.internal']}
    # Service mode (the executable alone): the profile's three directories, then %ProgramFiles(x86)%\cloudflared.
    assert host.calls[1]['read'][0] == config and host.calls[1]['read'][-1] == 'C:\\Program Files (x86)\\cloudflared\\config.yml'
    assert host.calls[2]['resolve'] == ['app.corp.internal']
    assert len(host.calls) == 3
    report = result.origin_report
    assert report['config']['path'] == config and 'default search' in report['config']['how']
    assert [(o['host'], o['addresses'], o['port']) for o in report['allowed']] == [
        ('db.corp.internal', ['10.1.2.7/32'], 5432), ('10.9.0.0/16', ['10.9.0.0/16'], 22),
        ('app.corp.internal', ['10.1.2.3/32', 'fd0a::3/128'], 443), ('10.1.2.5', ['10.1.2.5/32'], 3389)]
    assert report['allowed'][2]['source'] == config + ' ingress[0] (hostname app.example.com) (https)'
    assert not any('not connected to after the change' in note for note in report['notes'])  # they are now (OriginCheck)
    rules = [r for r in wf.desired_rules(result) if r['purpose'] == 'origin']
    assert [(r['port'], r['addresses']) for r in rules] == [
        (22, ['10.9.0.0/16']), (443, ['10.1.2.3/32', 'fd0a::3/128']), (3389, ['10.1.2.5/32']), (5432, ['10.1.2.7/32'])]


def test_windows_service_config_token_path_none_and_errors():
    wf, request = windows_request(cloudflared_config='auto')
    explicit = 'D:\\cf\\my config.yml'
    host = WindowsHost(service={'name': 'Cloudflared', 'account': '',
                                'image_path': '"C:\\cf\\cloudflared.exe" --config "%s" tunnel run' % explicit},
                       files={explicit: 'ingress:\n  - service: http://10.1.2.3:8080\n'})
    result = wf.discover_origins(request, host)
    assert host.calls[1]['read'] == [explicit] and result.origin_report['config']['how'].startswith('the --config of')
    assert result.origin_report['allowed'][0]['addresses'] == ['10.1.2.3/32']
    # --config naming a file that is not there: an error naming it, before any change.
    with pytest.raises(wf.RuleError, match=r'cannot read D:\\cf\\my config.yml \(the --config of the Cloudflared'):
        wf.discover_origins(request, WindowsHost(service=host.service))
    # A token install (tunnel run --token-file): no local ingress, a warning; no service at all: nothing read.
    token = WindowsHost(service={'name': 'Cloudflared', 'profile': SYSTEM_PROFILE, 'image_path':
                                 'C:\\cf\\cloudflared.exe tunnel run --token-file C:\\ProgramData\\cloudflared\\token'})
    result = wf.discover_origins(request, token)
    assert result.origin_report['config']['token'] and 'remotely-managed' in result.origin_report['warnings'][0]
    assert 'C:\\Program Files (x86)' not in ' '.join(token.calls[1]['read'])  # not service mode: no default dir
    result = wf.discover_origins(request, WindowsHost())
    assert result.origin_report['config']['path'] is None and 'no Cloudflared service' in result.origin_report['config']['how']
    # A path setting: read as given; none: no module call without names.
    wf2, given = windows_request(cloudflared_config=explicit)
    assert wf2.discover_origins(given, host).origin_report['config']['setting'] == explicit
    wf2, none = windows_request(cloudflared_config='none', origins=[{'host': '10.1.2.3', 'port': 80}])
    silent = WindowsHost()
    assert wf2.discover_origins(none, silent).origin_report['allowed'][0]['port'] == 80 and silent.calls == []
    # A name the host cannot resolve, a config cloudflared would refuse: errors naming them.
    wf2, named = windows_request(cloudflared_config='none', origins=[{'host': 'gone.internal', 'port': 80}])
    with pytest.raises(wf.RuleError, match=r'variable origins\[0\]: cannot resolve gone.internal .*No such host'):
        wf2.discover_origins(named, WindowsHost())
    bad = WindowsHost(service=host.service, files={explicit: 'ingress:\n  - hostname: a.example\n    service: http://x/app\n'})
    with pytest.raises(wf.RuleError, match=r'my config.yml ingress\[0\] \(hostname a.example\).*no path'):
        wf.discover_origins(request, bad)
    # No default deny: nothing asked.
    wf2, open_request = windows_request(default_deny=False)
    assert wf2.discover_origins(open_request, silent).origin_report['allowed'] == [] and silent.calls == []


def test_windows_config_paths_and_verify_origins():
    wf, dummy = windows_request()
    with pytest.raises(wf.RuleError, match=r"cloudflared_config='/etc/cloudflared/config.yml': expected auto, none"):
        windows_request(cloudflared_config='/etc/cloudflared/config.yml')
    assert windows_request(cloudflared_config='\\\\srv\\cf\\config.yml')[1].cloudflared_config == '\\\\srv\\cf\\config.yml'
    # verify.origins and require origins: the module's own check (windows_firewall.OriginCheck), not the probe's.
    from tests.unit.plugins.module_utils.test_probe_report import PLAN  # pylint: disable=import-outside-toplevel
    probe = wf.verify_params({'plan': PLAN, 'require': ['any_tunnel', 'origins'], 'timeout': 1.0,
                              'origins': [{'host': '10.1.2.3', 'port': 80}]})
    assert probe['require'] == ['any_tunnel'] and 'origins' not in probe
