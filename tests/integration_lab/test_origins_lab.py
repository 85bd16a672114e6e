# -*- coding: utf-8 -*-
"""cloudflared's origins under a default deny, on every Linux backend, proven with packets.

Each lab host gets a real cloudflared config in its private /etc (the host's /etc is an overlay; reset_firewalls
starts a fresh one): an ``https`` origin by address with cloudflared's default port, one by a name that only the
host can resolve (its own /etc/hosts: resolved on the host, at apply time), a loopback origin and an http_status
catch-all. The origins are TLS servers on lab addresses in the edge namespace that no rule of the egress plan names
on port 443; the decoy on 443 stands for "an address no ingress rule names".
"""

from __future__ import annotations

import pytest

from tests.integration_lab import test_ufw_egress_lab as ufw_suite
from tests.integration_lab.test_ufw_egress_lab import DECOY4, reaches

ORIGIN_BY_ADDRESS, ORIGIN_BY_NAME, ORIGIN_VARIABLE = '198.51.100.11', '198.51.100.12', '198.51.100.13'
CONFIG = """# cloudflared's config, as `cloudflared tunnel route` users write it
tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
credentials-file: /etc/cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json
ingress:
  - hostname: app.example.com
    service: https://%s
  - hostname: api.example.com
    service: https://origin.lab.internal:443
    originRequest:
      noTLSVerify: true
  - hostname: local.example.com
    service: http://localhost:8080
  - service: http_status:404
""" % ORIGIN_BY_ADDRESS
MODULES = {'firewalld': 'tunnelwall.cloudflared.firewalld_egress', 'ufw': 'tunnelwall.cloudflared.ufw_egress',
           'nftables': 'tunnelwall.cloudflared.nftables_egress'}
BLOCKED = 1.5


@pytest.fixture(params=sorted(MODULES))
def origin_host(request, lab):
    """(lab, host, module) for one host of each Linux backend, firewall and /etc fresh before and after."""
    host = lab.hosts_with(request.param)[0]
    lab.reset_firewalls([host])
    yield lab, host, MODULES[request.param]
    lab.reset_firewalls([host])


def write(lab, host, path, text, append=False):
    lab.exec(host, ['sh', '-c', 'mkdir -p "$(dirname "$1")" && cat %s "$1"' % ('>>' if append else '>'), 'write', path],
             check=True, stdin=text)


def deny(plan, **extra):
    return dict({'rules': plan['rules'], 'default_deny': True}, **extra)


def connects(lab, host, address, port=443):
    return reaches(lab, host, 'connect', address, port, timeout=BLOCKED)['ok']


@pytest.mark.once
def test_origins_of_the_config_in_its_standard_place_stay_reachable_and_nothing_else(origin_host, plan):
    lab, host, module = origin_host
    write(lab, host, '/etc/cloudflared/config.yml', CONFIG)
    write(lab, host, '/etc/hosts', '%s origin.lab.internal\n' % ORIGIN_BY_NAME, append=True)
    for address in (ORIGIN_BY_ADDRESS, ORIGIN_BY_NAME, ORIGIN_VARIABLE, DECOY4):  # positive controls
        assert connects(lab, host, address), address

    result = ufw_suite.run_module(lab, host, deny(plan), module=module)  # no origin variable: the config alone
    assert not result['failed'], result.get('msg')
    report = result['origins']
    assert report['config']['path'] == '/etc/cloudflared/config.yml' and report['config']['setting'] == 'auto'
    assert [(o['host'], o['addresses'], o['port']) for o in report['allowed']] == [
        (ORIGIN_BY_ADDRESS, [ORIGIN_BY_ADDRESS + '/32'], 443), ('origin.lab.internal', [ORIGIN_BY_NAME + '/32'], 443)]
    assert report['allowed'][1]['source'] == ('/etc/cloudflared/config.yml ingress[1] (hostname api.example.com) '
                                              '(https)')
    assert any('ingress[2]' in note and 'loopback' in note for note in report['notes'])
    # No verify option: no probe, but the origins were checked all the same (before and after the change).
    assert result['verification'] is None
    assert [(row['address'], row['state'], row['verdict']) for row in report['verification']] == [
        (ORIGIN_BY_ADDRESS + '/32', 'reachable', 'reachable'), (ORIGIN_BY_NAME + '/32', 'reachable', 'reachable')]
    assert connects(lab, host, ORIGIN_BY_ADDRESS) and connects(lab, host, ORIGIN_BY_NAME)
    assert not connects(lab, host, ORIGIN_VARIABLE) and not connects(lab, host, DECOY4)  # named by no rule
    again = ufw_suite.run_module(lab, host, deny(plan), module=module)
    assert not again['failed'] and again['changed'] is False, again.get('msg')

    # Explicit origins instead of the config: the variable's origin passes, the config's no longer do.
    explicit = ufw_suite.run_module(lab, host, deny(plan, cloudflared_config='none',
                                                    origins=[{'host': ORIGIN_VARIABLE, 'port': 443}]), module=module)
    assert not explicit['failed'], explicit.get('msg')
    assert explicit['origins']['allowed'][0]['source'] == 'variable origins[0]'
    assert connects(lab, host, ORIGIN_VARIABLE)
    assert not connects(lab, host, ORIGIN_BY_ADDRESS) and not connects(lab, host, DECOY4)


@pytest.mark.once
def test_a_config_that_cannot_be_understood_fails_before_any_change(origin_host, plan):
    lab, host, module = origin_host
    write(lab, host, '/etc/cloudflared/config.yml', CONFIG.replace('https://%s' % ORIGIN_BY_ADDRESS,
                                                                   'https://%s/app' % ORIGIN_BY_ADDRESS))
    before = lab.nft_ruleset(host)
    result = ufw_suite.run_module(lab, host, deny(plan), module=module)
    assert result['failed']
    assert '/etc/cloudflared/config.yml ingress[0] (hostname app.example.com)' in result['msg'], result['msg']
    assert 'no path' in result['msg'] and 'Nothing was changed' in result['msg']
    assert lab.nft_ruleset(host) == before and connects(lab, host, DECOY4)


@pytest.mark.once
def test_a_default_deny_that_blocks_an_origin_fails_verification_and_restores(origin_host, plan):
    """verify.origins names the decoy: it must stay reachable, no rule allows it. It connects before the change
    and gets our TCP reset after it - told from an origin's own refusal by the connect before the change."""
    lab, host, module = origin_host
    write(lab, host, '/etc/cloudflared/config.yml', CONFIG.replace('origin.lab.internal', ORIGIN_BY_NAME))
    before = lab.nft_ruleset(host)
    verify = {'plan': plan, 'timeout': 1.0, 'ca_path': lab.ca, 'origins': [{'host': DECOY4, 'port': 443}]}
    result = ufw_suite.run_module(lab, host, deny(plan, verify=verify), module=module)
    assert result['failed'] and 'verification failed after applying the rules' in result['msg'], result
    assert 'origins: %s port 443' % DECOY4 in result['msg'] and 'connected before the change' in result['msg']
    assert result['rolled_back'] is True
    assert lab.nft_ruleset(host) == before
    assert connects(lab, host, DECOY4)


PREBLOCK = """table inet preblock {
  chain output {
    type filter hook output priority filter - 10;
    ip daddr %s tcp dport 443 reject with tcp reset
  }
}
"""


@pytest.mark.once
def test_an_earlier_block_fails_verification_and_a_down_origin_passes(origin_host, plan):
    """Verification honesty: an origin the new rules allow, still blocked by an earlier rule of this host (another
    table's reject with tcp reset: refused before and after the change, like an origin's own refusal) fails and is
    restored - connection tracking saw no SYN leave; an origin that is down (nothing listens: its own stack's reset,
    the SYN left the host) passes."""
    lab, host, module = origin_host
    down = CONFIG.replace('https://%s' % ORIGIN_BY_ADDRESS, 'https://%s:8443' % ORIGIN_BY_ADDRESS)
    write(lab, host, '/etc/cloudflared/config.yml', down.replace('origin.lab.internal', ORIGIN_BY_NAME))
    probe = reaches(lab, host, 'connect', ORIGIN_BY_ADDRESS, 8443, timeout=BLOCKED)
    assert not probe['ok'] and probe['error'] == 'refused', probe  # positive control: the origin's own reset
    result = ufw_suite.run_module(lab, host, deny(plan), module=module)
    assert not result['failed'], result.get('msg')
    rows = dict((row['port'], row) for row in result['origins']['verification'])
    assert rows[8443]['state'] == 'refused' and 'the SYN left this host' in rows[8443]['verdict'], rows
    assert rows[443]['state'] == 'reachable', rows

    lab.reset_firewalls([host])
    write(lab, host, '/etc/cloudflared/config.yml', CONFIG.replace('origin.lab.internal', ORIGIN_BY_NAME))
    lab.exec(host, ['nft', '-f', '-'], check=True, stdin=PREBLOCK % ORIGIN_BY_ADDRESS)
    try:
        probe = reaches(lab, host, 'connect', ORIGIN_BY_ADDRESS, 443, timeout=BLOCKED)
        assert not probe['ok'] and probe['error'] == 'refused', probe  # the same refusal as the down origin's
        before = sorted(lab.nft_ruleset(host).splitlines())  # firewalld's reload puts its table after ours
        result = ufw_suite.run_module(lab, host, deny(plan), module=module)
        assert result['failed'] and 'verification failed after applying the rules' in result['msg'], result
        assert 'origins: %s port 443' % ORIGIN_BY_ADDRESS in result['msg']
        assert 'refused by this host itself' in result['msg'] and 'the same before the change' in result['msg']
        assert result['rolled_back'] is True
        assert sorted(lab.nft_ruleset(host).splitlines()) == before
    finally:
        lab.exec(host, ['nft', 'delete', 'table', 'inet', 'preblock'])


@pytest.mark.once
def test_the_role_keeps_the_configs_origins_reachable_on_every_backend(lab, tmp_path):
    """The role with nothing but -e egress_firewall_default_deny=true: the config in its standard place does it."""
    from tests.integration_lab import test_egress_firewall_role_lab as role_suite  # pylint: disable=import-outside-toplevel
    hosts = role_suite.HOSTS
    lab.reset_firewalls(hosts)
    try:
        for host in hosts:
            write(lab, host, '/etc/cloudflared/config.yml', CONFIG.replace('origin.lab.internal', ORIGIN_BY_NAME))
            assert connects(lab, host, DECOY4) and connects(lab, host, ORIGIN_BY_ADDRESS)
        rc, output, recap = role_suite.play(lab, tmp_path, '-e', 'egress_firewall_default_deny=true')
        assert rc == 0, output
        for host in hosts:
            assert connects(lab, host, ORIGIN_BY_ADDRESS) and connects(lab, host, ORIGIN_BY_NAME), host
            assert not connects(lab, host, DECOY4) and not connects(lab, host, ORIGIN_VARIABLE), host
        rc, output, recap = role_suite.play(lab, tmp_path, '-e', 'egress_firewall_default_deny=true')
        assert rc == 0 and all(recap[host]['changed'] == 0 for host in hosts), output
    finally:
        lab.reset_firewalls(hosts)


def test_the_check_playbook_reports_the_origins_of_the_config_and_of_the_variable(lab, tmp_path):
    """tunnelwall.cloudflared.check probes cloudflared's origins as the role would allow them: its config in the
    standard place (auto) and egress_firewall_origins, names resolved on the host; a UDP origin is listed, not checked."""
    from tests.integration_lab import test_site_playbooks_lab as site_suite  # pylint: disable=import-outside-toplevel
    host = lab.hosts_with('nftables')[0]
    lab.reset_firewalls([host])
    try:
        write(lab, host, '/etc/cloudflared/config.yml', CONFIG)
        write(lab, host, '/etc/hosts', '%s origin.lab.internal\n' % ORIGIN_BY_NAME, append=True)
        origins = '{"egress_firewall_origins": [{"host": "%s", "port": 443}, {"host": "%s", "port": 53, "protocol": "udp"}]}'
        rc, output, dummy, report = site_suite.playbook(lab, tmp_path, 'check', '-e', origins % (ORIGIN_VARIABLE, DECOY4),
                                                        targets=host)
        assert report is not None, output
        cell = site_suite.rows(report)[host]['cells']['origins']
        reachable, checked = (int(n) for n in cell['text'].split(' ', 1)[0].split('/'))
        # The two config origins and the variable's, each connected on 443; the config's localhost service is no
        # destination (loopback always gets out) and the UDP origin is not connected to at all.
        assert reachable == checked == 3 and cell['state'] == 'ok', cell
        assert any(column['id'] == 'origins' for column in report['columns']), report['columns']
    finally:
        lab.reset_firewalls([host])


@pytest.mark.once
def test_the_check_playbook_shows_origin_drift_when_an_origin_name_moves(lab, plan, tmp_path):
    """Every run resolves the origins again, and the drift check covers them like the edge: after a default deny
    allowed the config's origins, the origin's name is re-pointed on the host (its resolver: /etc/hosts) - the check
    playbook's Drift column says +1/-1 for purpose origin and the host is drifted; the edge did not move."""
    from tests.integration_lab import test_site_playbooks_lab as site_suite  # pylint: disable=import-outside-toplevel
    host = lab.hosts_with('nftables')[0]
    lab.reset_firewalls([host])
    try:
        write(lab, host, '/etc/cloudflared/config.yml', CONFIG)
        write(lab, host, '/etc/hosts', '%s origin.lab.internal\n' % ORIGIN_BY_NAME, append=True)
        applied = ufw_suite.run_module(lab, host, deny(plan), module=MODULES['nftables'])
        assert not applied['failed'], applied.get('msg')
        rc, output, dummy, report = site_suite.playbook(lab, tmp_path / 'before', 'check', '-e',
                                                        'egress_firewall_default_deny=true', targets=host)
        assert report is not None, output
        row = site_suite.rows(report)[host]
        assert row['drift'] == {'new': 0, 'gone': 0, 'purposes': [], 'text': '+0/\u22120'}, row

        lab.exec(host, ['sed', '-i', 's/^%s origin.lab.internal$/%s origin.lab.internal/' % (ORIGIN_BY_NAME, ORIGIN_VARIABLE),
                        '/etc/hosts'], check=True)
        rc, output, dummy, report = site_suite.playbook(lab, tmp_path / 'after', 'check', '-e',
                                                        'egress_firewall_default_deny=true', targets=host)
        assert report is not None, output
        row = site_suite.rows(report)[host]
        assert row['drift'] == {'new': 1, 'gone': 1, 'purposes': ['origin'], 'text': '+1/\u22121'}, row
        assert row['state'] in ('drifted', 'degraded'), row  # the moved origin is not allowed: its probe fails too
        stats = output[output.index('CUSTOM STATS'):]
        assert '+1/\u22121' in stats or '+1/\\u22121' in stats, stats
    finally:
        lab.reset_firewalls([host])
