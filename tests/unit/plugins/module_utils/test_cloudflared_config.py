# -*- coding: utf-8 -*-
"""cloudflared_config: where cloudflared finds its config and what its ingress rules connect to.

Each expectation cites the cloudflared 2026.8 source it comes from (/work/.mirror/cloudflare+cloudflared):
config/configuration.go (search order, file names, field names), ingress/ingress.go (validateIngress,
isHTTPService), ingress/origin_service.go (newTCPOverWSService default ports), ingress/middleware/jwtvalidator.go
(Access certificates' host), ipaccess/access.go (socks-proxy ipRules). Both YAML readers are run on every fixture:
PyYAML's safe_load (what a host with python3-yaml uses) and the stdlib subset parser (every other host).
"""

from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import cloudflared_config as cc

HERE = os.path.join(os.path.dirname(__file__), 'cloudflared_configs')


def fixture(name):
    with open(os.path.join(HERE, name)) as handle:
        return handle.read()


@pytest.mark.parametrize('name', sorted(n for n in os.listdir(HERE) if n not in ('bad_yaml.txt', 'anchors.yml')))
def test_subset_parser_reads_what_pyyaml_reads(name):
    """The stdlib reader gives exactly PyYAML's document for every real-shaped fixture."""
    text = fixture(name)
    assert cc.parse_yaml(text, name) == yaml.safe_load(text)


def mapped(name):
    return cc.destinations(cc.parse_yaml(fixture(name), name), name)


def test_docs_example():
    """http with a port; loopback (localhost) opens nothing; https without a port is 443 (Go's transport);
    http_status answers itself (ingress.go validateIngress)."""
    result = mapped('docs_example.yml')
    assert [(o['host'], o['port'], o['kind']) for o in result['origins']] == [
        ('10.1.2.3', 8080, 'http'), ('api.internal.example', 443, 'https')]
    assert result['origins'][0]['source'] == 'docs_example.yml ingress[2] (hostname app.example.com)'
    assert result['rules'] == 5 and not result['warp_routing']
    assert any('ingress[0]' in n and 'loopback' in n for n in result['notes'])
    assert any('ingress[4]' in n and 'http_status:404' in n for n in result['notes'])


def test_every_kind():
    """origin_service.go newTCPOverWSService: ssh 22, rdp 3389, smb 445, tcp 7864; ws 80, wss 443;
    socks-proxy: the allow rules' prefixes and ports; access.required -> <team>.cloudflareaccess.com:443 and
    .fed. with environment fed (jwtvalidator.go); unix, unix+tls, hello_world and bastion open nothing."""
    result = mapped('every_kind.yaml')
    got = [(o['host'], o['port'], o['protocol'], o['kind']) for o in result['origins']]
    assert got == [
        ('10.0.0.5', 80, 'tcp', 'ws'), ('10.0.0.6', 443, 'tcp', 'wss'), ('10.0.0.7', 22, 'tcp', 'ssh'),
        ('10.0.0.8', 3389, 'tcp', 'rdp'), ('2001:db8::8', 445, 'tcp', 'smb'), ('10.0.0.9', 7864, 'tcp', 'tcp'),
        ('db.internal', 5432, 'tcp', 'tcp'),
        ('10.9.0.0/16', 80, 'tcp', 'socks-proxy'), ('10.9.0.0/16', 443, 'tcp', 'socks-proxy'),
        ('10.0.0.10', 8443, 'tcp', 'https'), ('widgetcorp.cloudflareaccess.com', 443, 'tcp', 'access'),
        ('10.0.0.11', 80, 'tcp', 'http'), ('agency.fed.cloudflareaccess.com', 443, 'tcp', 'access')]
    assert result['warp_routing'] is True
    notes = ' '.join(result['notes'])
    for text in ('ingress[7] (hostname sock.example.com): a unix socket', 'ingress[8]', 'hello world',
                 'ingress[11] (hostname jump.example.com): bastion'):
        assert text in notes


@pytest.mark.parametrize('name, words', [
    ('bad_path.yml', ['bad_path.yml ingress[0] (hostname app.example.com)', 'no path']),
    ('socks_all_ports.yml', ['socks_all_ports.yml ingress[0] (hostname proxy.example.com) originRequest.ipRules[0]',
                             'every port of 10.9.0.0/16']),
    ('no_default_port.yml', ['no_default_port.yml ingress[0]', 'scheme gopher has no default port']),
])
def test_rules_cloudflared_cannot_use_are_errors_naming_file_and_rule(name, words):
    with pytest.raises(cc.ConfigError) as raised:
        mapped(name)
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize('service', ['', None, 'app.example.com', '10.1.2.3:80', 'http://'])
def test_services_without_scheme_or_host(service):
    """validateIngress: 'please make sure it has a scheme and a hostname'."""
    with pytest.raises(cc.ConfigError) as raised:
        cc.destinations({'ingress': [{'hostname': 'a.example', 'service': service}]}, '/etc/cloudflared/config.yml')
    assert '/etc/cloudflared/config.yml ingress[0] (hostname a.example)' in str(raised.value)


def test_bastion_mode_from_the_defaults_applies_to_every_rule():
    """validateIngress: `r.Service == ServiceBastion || cfg.BastionMode`, cfg = defaults merged with the rule's."""
    result = cc.destinations({'originRequest': {'bastionMode': True},
                              'ingress': [{'service': 'ssh://10.0.0.1'}]}, 'c.yml')
    assert result['origins'] == [] and 'bastion' in result['notes'][0]


def test_access_not_required_fetches_nothing_and_a_bad_team_is_an_error():
    """ingress.go: the JWT validator exists only with access.required."""
    quiet = cc.destinations({'ingress': [{'service': 'http://10.0.0.1', 'originRequest': {
        'access': {'required': False, 'teamName': 'x'}}}]}, 'c.yml')
    assert [o['kind'] for o in quiet['origins']] == ['http']
    with pytest.raises(cc.ConfigError, match=r'c.yml ingress\[0\]: originRequest.access.teamName=None'):
        cc.destinations({'ingress': [{'service': 'http://10.0.0.1', 'originRequest': {'access': {'required': True}}}]},
                        'c.yml')


def test_socks_proxy_type_on_a_tcp_service_is_unbounded():
    """origin_service.go tcpOverWSService.start: proxyType socks makes the client choose the destination."""
    result = cc.destinations({'ingress': [{'service': 'tcp://10.0.0.1:1080', 'originRequest': {'proxyType': 'socks'}}]},
                             'c.yml')
    assert result['origins'] == [] and 'proxyType socks' in result['notes'][0]


@pytest.mark.parametrize('text, words', [
    (fixture('bad_yaml.txt'), ['f.yml:3', 'unexpected indentation']),
    (fixture('anchors.yml'), ['f.yml:1', 'outside the subset', 'PyYAML']),
    ('ingress:\n\t- service: x\n', ['f.yml:2', 'tab']),
    ('a: 1\na: 2\n', ['f.yml:2', "key 'a' appears twice"]),
    ('ingress:\n  - service: "http://x\n', ['f.yml:2', 'unterminated']),
    ('key: {a: 1}\n', ['f.yml:1', 'flow mappings']),
    ('just text\n', ['f.yml:1', 'expected "key: value"']),
])
def test_subset_parser_refuses_what_it_cannot_read(text, words):
    with pytest.raises(cc.ConfigError) as raised:
        cc.parse_yaml(text, 'f.yml')
    for word in words:
        assert word in str(raised.value)


def test_comments_quotes_and_scalars():
    text = ('# top\nname: "a # not a comment"   # a comment\nq: \'it\'\'s\'\nn: 42\nb: true\nz: ~\ne: []\nm: {}\n'
            'url: http://h:8080#frag\n')
    assert cc.parse_yaml(text, 'f') == yaml.safe_load(text)


def test_load_refuses_a_document_that_is_not_a_mapping():
    with pytest.raises(cc.ConfigError, match='f.yml: expected a mapping'):
        cc.load('- a\n- b\n', 'f.yml')
    with pytest.raises(cc.ConfigError, match='f.yml: not valid YAML'):
        cc.load('a: [\n', 'f.yml')
    assert cc.load('', 'f.yml') == {}


# ---------------------------------------------------------------------------------------------------------------
# where
# ---------------------------------------------------------------------------------------------------------------
SERVICE_INSTALL_UNIT = """[Unit]
Description=cloudflared
After=network-online.target

[Service]
TimeoutStartSec=0
Type=notify
ExecStart=/usr/bin/cloudflared --no-autoupdate --config /etc/cloudflared/config.yml tunnel run
Restart=on-failure
"""
TOKEN_UNIT = """[Service]
ExecStart=/usr/bin/cloudflared --no-autoupdate tunnel run --token eyJhIjoi
User=cloudflared
"""


def host(files, homes=None):
    homes = homes or {'root': '/root', 'cloudflared': '/home/cloudflared'}
    return dict(read_text=files.get, exists=lambda p: p in files, home_of=homes.get)


def test_the_units_config_wins():
    """`cloudflared service install` writes --config /etc/cloudflared/config.yml into its unit."""
    found = cc.find(**host({'/etc/systemd/system/cloudflared.service': SERVICE_INSTALL_UNIT,
                            '/root/.cloudflared/config.yml': 'x'}))
    assert found['path'] == '/etc/cloudflared/config.yml' and 'the --config of /etc/systemd/system' in found['how']
    assert cc.unit_command('ExecStart=/usr/bin/cloudflared --config=/opt/c.yaml tunnel run')[0] == '/opt/c.yaml'


def test_default_search_order_home_first_then_etc_then_usr_local():
    """configuration.go FindDefaultConfigPath: ~/.cloudflared, ~/.cloudflare-warp, ~/cloudflare-warp, /etc/cloudflared,
    /usr/local/etc/cloudflared; config.yml before config.yaml in each."""
    assert cc.candidates(['/root'])[:3] == ['/root/.cloudflared/config.yml', '/root/.cloudflared/config.yaml',
                                            '/root/.cloudflare-warp/config.yml']
    assert cc.candidates(['/root'])[-4:] == ['/etc/cloudflared/config.yml', '/etc/cloudflared/config.yaml',
                                             '/usr/local/etc/cloudflared/config.yml',
                                             '/usr/local/etc/cloudflared/config.yaml']
    files = {'/etc/cloudflared/config.yaml': 'x', '/usr/local/etc/cloudflared/config.yml': 'x'}
    assert cc.find(**host(files))['path'] == '/etc/cloudflared/config.yaml'
    files['/root/cloudflare-warp/config.yml'] = 'x'
    assert cc.find(**host(files))['path'] == '/root/cloudflare-warp/config.yml'


def test_token_unit_searches_its_users_home_and_says_token():
    files = {'/lib/systemd/system/cloudflared.service': TOKEN_UNIT, '/home/cloudflared/.cloudflared/config.yml': 'x'}
    found = cc.find(**host(files))
    assert found['token'] is True and found['path'] == '/home/cloudflared/.cloudflared/config.yml'
    del files['/home/cloudflared/.cloudflared/config.yml']
    found = cc.find(**host(files))
    assert found['path'] is None and found['token'] is True and '/etc/cloudflared/config.yml' in found['how']


def test_a_proxy_in_the_units_environment_is_reported():
    """ingress/origin_service.go newHTTPTransport: Proxy: http.ProxyFromEnvironment."""
    unit = SERVICE_INSTALL_UNIT + 'Environment="HTTPS_PROXY=http://proxy.lan:3128" TZ=UTC\n'
    assert cc.unit_proxies(unit) == ['HTTPS_PROXY=http://proxy.lan:3128']
    found = cc.find(**host({'/etc/systemd/system/cloudflared.service': unit}))
    assert found['proxies'] == ['HTTPS_PROXY=http://proxy.lan:3128']


@pytest.mark.parametrize('line, argv', [
    ('"C:\\Program Files\\cloudflared\\cloudflared.exe" tunnel run --token-file C:\\ProgramData\\cloudflared\\token',
     ['C:\\Program Files\\cloudflared\\cloudflared.exe', 'tunnel', 'run', '--token-file',
      'C:\\ProgramData\\cloudflared\\token']),
    ('C:\\cf\\cloudflared.exe --config "D:\\my dir\\config.yml"', ['C:\\cf\\cloudflared.exe', '--config', 'D:\\my dir\\config.yml']),
    ('a\\\\"b c"d" e\\\\f "g\\\\"', ['a\\b cd e\\\\f g\\']),  # 2n backslashes before a quote: n, and the quote counts
    ('x \\"quoted\\" ""', ['x', '"quoted"', '']),  # 2n+1: a literal quote; "" an empty argument
    ('', []),
])
def test_split_command_line_as_windows_does(line, argv):
    assert cc.split_command_line(line) == argv


def test_windows_service_command_and_candidates():
    service = cc.windows_service_command
    assert service('"C:\\cf\\cloudflared.exe"') == (None, False, True)  # service mode: the executable alone
    assert service('C:\\Program Files\\cloudflared\\cloudflared.exe') == (None, False, True)  # unquoted, with blanks
    assert service('C:\\cf\\cloudflared.exe --config=C:\\cf\\c.yml tunnel run') == ('C:\\cf\\c.yml', False, False)
    assert service('C:\\cf\\cloudflared.exe tunnel run --token eyJh') == (None, True, False)
    home = 'C:\\Windows\\System32\\config\\systemprofile'
    paths = cc.windows_candidates(home, True, None, 'C:\\Program Files (x86)')
    assert paths[:2] == [home + '\\.cloudflared\\config.yml', home + '\\.cloudflared\\config.yaml']
    assert paths[-1] == 'C:\\Program Files (x86)\\cloudflared\\config.yml' and len(paths) == 7
    assert cc.windows_candidates(home, True, 'E:\\cfd', 'C:\\x')[-1] == 'E:\\cfd\\config.yml'
    assert cc.windows_candidates(None, False) == []
