# -*- coding: utf-8 -*-
"""The egress_firewall role run with ansible-playbook on a firewalld, a ufw and an nftables host at once, proven with packets.

Only fw2, ufw2 and nft1 are touched (firewalls reset before and after each test); faults are switched off after each test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest

from tests.lab import config
from tests.support.ansible_output import play_recap
from tests.support.edge_zone import DECOY

BIN = os.path.dirname(sys.executable)
HOSTS = ('fw2', 'ufw2', 'nft1')
BACKEND = {'fw2': 'firewalld', 'ufw2': 'ufw', 'nft1': 'nftables'}
# The files each backend writes, compared by content: the firewall's own configuration, or (nftables) our ruleset
# file, boot unit and drop-in.
FILES = {'firewalld': '/etc/firewalld', 'ufw': '/etc/ufw', 'nftables': '/etc/nftables.d /etc/systemd/system'}
API_V4, UPDATE_V4, API_V6 = '198.51.100.80', '198.51.100.81', '2001:db8:e::80'
PLAYBOOK = '''
- name: Apply the egress_firewall role
  hosts: {hosts}
  gather_facts: false
  roles:
    - role: tunnelwall.cloudflared.egress_firewall
      vars:
        egress_firewall_probe_ca_path: "{{{{ tunnelwall_lab_ca }}}}"
        egress_firewall_probe_timeout: 1.5
'''


@pytest.fixture
def hosts(lab, tmp_path):
    lab.reset_firewalls(HOSTS)
    yield lab
    lab.reset_firewalls(HOSTS)


def play(lab, tmp_path, *args, hosts=HOSTS):
    """Run the role on ``hosts``; return (rc, output, {host: {ok, changed, failed}})."""
    playbook = tmp_path / 'role.yml'
    playbook.write_text(PLAYBOOK.format(hosts=':'.join(hosts)))
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    result = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', lab.inventory, str(playbook)] + list(args),
                            capture_output=True, text=True, env=env, timeout=600, check=False, cwd=config.REPO)
    output = result.stdout + result.stderr
    recap = play_recap(result.stdout)
    assert set(recap) == set(hosts), output
    return result.returncode, output, recap


def ruleset(lab, host):
    """What the kernel enforces (nft, counters masked; lines sorted, as a reload may order a chain's rules
    differently from runtime changes with the same content) and the firewall's files, by content."""
    text = lab.nft_ruleset(host)
    # Not the boot check (egress_transaction's unit and drop-in, host-wide and idle without a pending record): it stays
    # once installed, state=absent included.
    files = lab.exec(host, ['sh', '-c', 'find %s -type f ! -name "tunnelwall-boot-revert.*" 2>/dev/null | sort | '
                            'xargs -r sha256sum' % FILES[BACKEND[host]]], check=True).stdout
    return sorted(text.splitlines()), files


def reaches(lab, host, address, port, check='connect'):
    if check == 'quic':
        return lab.probe(host, 'quic', address, port, 'quic.cftunnel.com', timeout=1.5)['ok']
    return lab.probe(host, 'connect', address, port, timeout=1.5)['ok']


def tunnel_addresses(lab):
    addresses = {}
    for family, rdtype in (('ipv4', 'A'), ('ipv6', 'AAAA')):
        addresses[family] = [item.address for name in ('region1.v2.argotunnel.com', 'region2.v2.argotunnel.com')
                             for rrset in lab.query(name, rdtype).answer for item in rrset]
    return addresses


def test_default_deny_allows_exactly_the_plan_on_every_backend_and_a_rerun_changes_nothing(hosts, tmp_path):
    lab = hosts
    edge = tunnel_addresses(lab)
    before = {host: ruleset(lab, host) for host in HOSTS}
    for host in HOSTS:  # without the role the decoy answers, so a refusal later is the host's own firewall
        assert reaches(lab, host, DECOY['ipv4'], 7844) and reaches(lab, host, API_V4, 7844)

    rc, output, recap = play(lab, tmp_path, '-e', 'egress_firewall_default_deny=true')
    assert rc == 0, output
    assert all(recap[host]['changed'] > 0 for host in HOSTS), recap

    for host in HOSTS:
        for address in (edge['ipv4'][0], edge['ipv4'][-1], edge['ipv6'][0], edge['ipv6'][-1]):
            assert reaches(lab, host, address, 7844), (host, address)
            assert reaches(lab, host, address, 7844, 'quic'), (host, address)
        assert reaches(lab, host, API_V4, 443) and reaches(lab, host, UPDATE_V4, 443) and reaches(lab, host, API_V6, 443)
        for address, port in ((DECOY['ipv4'], 7844), (DECOY['ipv6'], 7844), (DECOY['ipv4'], 443), (API_V4, 7844),
                              (edge['ipv4'][0], 443)):
            assert not reaches(lab, host, address, port), (host, address, port)
        assert not reaches(lab, host, DECOY['ipv4'], 7844, 'quic')
        resolved = lab.probe(host, 'resolve', 'region1.v2.argotunnel.com')
        assert resolved['ok'] and edge['ipv4'][0] in resolved['addresses'], (host, resolved)

    # The rerun (SSH still works under default deny) changes nothing.
    rc, output, recap = play(lab, tmp_path, '-e', 'egress_firewall_default_deny=true')
    assert rc == 0 and all(recap[host]['changed'] == 0 for host in HOSTS), output

    rc, output, recap = play(lab, tmp_path, '-e', 'egress_firewall_state=absent')
    assert rc == 0 and all(recap[host]['changed'] == 1 for host in HOSTS), output
    assert {host: ruleset(lab, host) for host in HOSTS} == before
    assert all(reaches(lab, host, DECOY['ipv4'], 7844) for host in HOSTS)


def test_check_and_diff_mode_show_the_change_and_leave_the_ruleset_unchanged(hosts, tmp_path):
    lab = hosts
    before = {host: ruleset(lab, host) for host in HOSTS}
    # Answers as an AWX survey gives them: strings, a multiple choice one item per line.
    survey = '{"egress_firewall_default_deny": "true", "egress_firewall_purposes": "tunnel\\napi\\n update",' \
             ' "egress_firewall_require": "any_tunnel, api"}'
    rc, output, recap = play(lab, tmp_path, '-e', survey, '--check', '--diff')
    assert rc == 0, output
    assert all(recap[host]['changed'] > 0 for host in HOSTS), recap
    assert '+default outgoing policy: reject' in output  # ufw's diff
    assert '+allow out udp/7844 to 198.51.100.' in output
    assert 'rule priority=\\"32767\\" reject' in output or 'rule priority="32767" reject' in output  # firewalld's diff
    assert '+table inet tunnelwall {' in output  # nftables' diff: the table as nft lists it
    assert {host: ruleset(lab, host) for host in HOSTS} == before
    assert 'Probe the tunnel edge' not in output  # nothing applied, nothing to verify


def test_an_unreachable_edge_rolls_back_to_the_previous_state_and_names_what_failed(hosts, tmp_path):
    lab = hosts
    rc, output, dummy = play(lab, tmp_path, '-e', 'egress_firewall_default_deny=true')
    assert rc == 0, output
    applied = {host: ruleset(lab, host) for host in HOSTS}
    lab.fault('udp7844', 'drop')
    lab.fault('tcp7844', 'drop')
    # A new allowance (NTP) makes this run change the firewall before the verification fails.
    rc, output, recap = play(lab, tmp_path, '-e', 'egress_firewall_default_deny=true', '-e',
                             '{"egress_firewall_extra_allow": [{"protocol": "udp", "port": 123, "destinations": ["203.0.113.123"]}]}')
    assert rc != 0 and all(recap[host]['failed'] == 1 for host in HOSTS), output
    for host, backend in BACKEND.items():
        # The last failure of the host is the role's own, after the rescue.
        message = re.findall(r'fatal: \[%s\]: FAILED! => .*"msg": "([^"]*)"' % host, output)[-1]
        assert message.startswith('egress_firewall on %s (%s): verification failed after applying the rules - any_tunnel: '
                                  % (host, backend)), message
        assert 'quic udp/7844 timeout: ' in message and 'To fix: open outbound TCP 7844 to ' in message
        assert message.endswith('Rolled back: the firewall is as before this run.'), message
    assert {host: ruleset(lab, host) for host in HOSTS} == applied


def test_a_default_deny_without_tunnel_destinations_is_refused_before_any_change(hosts, tmp_path):
    lab = hosts
    before = {host: ruleset(lab, host) for host in HOSTS}
    rc, output, recap = play(lab, tmp_path, '-e', 'egress_firewall_default_deny=true', '-e', 'egress_firewall_purposes=api,update')
    assert rc != 0 and all(recap[host]['failed'] == 1 for host in HOSTS), output
    assert 'the rules to apply hold no tunnel destination (egress_firewall_purposes=api,update' in output
    assert {host: ruleset(lab, host) for host in HOSTS} == before
    rc, output, dummy = play(lab, tmp_path, '-e', 'egress_firewall_backend=iptables')
    assert rc != 0 and "egress_firewall_backend" in output and 'iptables' in output, output
    rc, output, dummy = play(lab, tmp_path, '-e', '{"egress_firewall_purposes": "tunnel\\n api,\\nmail"}')
    assert rc != 0 and 'egress_firewall_purposes=' in output, output
    assert 'unknown mail (choose from tunnel, api, update, extra). Nothing was changed.' in output, output
    assert {host: ruleset(lab, host) for host in HOSTS} == before


def info(lab, host):
    """egress_firewall_info's result on ``host`` (ad hoc, one line per host)."""
    result = subprocess.run([os.path.join(BIN, 'ansible'), host, '-i', lab.inventory, '-m',
                             'tunnelwall.cloudflared.egress_firewall_info', '-o'],
                            capture_output=True, text=True, timeout=120, check=False, cwd=config.REPO,
                            env=dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_LOAD_CALLBACK_PLUGINS='0'))
    line = [ln for ln in result.stdout.splitlines() if ln.startswith(host + ' | ')]
    assert len(line) == 1 and ' | SUCCESS => ' in line[0], result.stdout + result.stderr
    return json.loads(line[0].split(' => ', 1)[1])


# Host kind -> (backend chosen, firewalld installed/running, ufw installed/enabled). nft is usable on every lab host
# (root in its own network namespace); the `none` host has the machine's firewalld (stopped) and ufw (inactive),
# and nftables is chosen before an inactive ufw.
DETECTED = {'firewalld': ('firewalld', (True, True), (True, False)),
            'ufw': ('ufw', (True, False), (True, True)),
            'nftables': ('nftables', (False, False), (False, False)),
            'none': ('nftables', (True, False), (True, False))}


@pytest.mark.parametrize('kind', sorted(DETECTED))
def test_the_backend_is_detected_on_each_host_kind(lab, kind):
    host = lab.hosts_with(kind)[0]
    backend, firewalld, ufw = DETECTED[kind]
    found = info(lab, host)
    assert found['changed'] is False and found['backend'] == backend, found
    assert (found['firewalld']['installed'], found['firewalld']['running']) == firewalld, found
    assert (found['ufw']['installed'], found['ufw']['enabled']) == ufw, found
    version = lab.exec(host, ['nft', '--version'], check=True).stdout.split()[1].lstrip('v')
    assert found['nftables'] == {'installed': True, 'usable': True, 'version': version, 'detail': 'usable'}, found
    assert found['description'].endswith('; nftables %s usable' % version), found['description']
    if kind == 'nftables':
        assert found['description'] == 'firewalld not installed; ufw not installed; nftables %s usable' % version


def test_two_runs_at_once_both_succeed_and_leave_one_consistent_state(hosts, tmp_path):
    lab = hosts
    outcomes = []

    def run(index):
        directory = tmp_path / str(index)
        directory.mkdir()
        outcomes.append(play(lab, directory, '-e', 'egress_firewall_default_deny=true'))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [rc for rc, dummy, dummy in outcomes] == [0, 0], [o for dummy, o, dummy in outcomes]
    rc, output, recap = play(lab, tmp_path, '-e', 'egress_firewall_default_deny=true')
    assert rc == 0 and all(recap[host]['changed'] == 0 for host in HOSTS), output
    assert not any(reaches(lab, host, DECOY['ipv4'], 7844) for host in HOSTS)
