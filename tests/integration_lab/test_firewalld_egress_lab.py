# -*- coding: utf-8 -*-
"""firewalld_egress run by Ansible over SSH on the lab's firewalld hosts, proven with packets and `nft list ruleset`.

Only fw1 and fw2 are touched (reset before and after each test); no fault is switched on.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from tests.lab import config
from tests.support.edge_zone import DECOY

BIN = os.path.dirname(sys.executable)
HOST = 'fw1'
MINE = ['fw1', 'fw2']
MODULE = 'tunnelwall.cloudflared.firewalld_egress'
API_V4, UPDATE_V4 = '198.51.100.80', '198.51.100.81'

# Tests marked `once` prove what the firewall does - packets, rulesets, files, rollbacks, concurrent runs -
# which no ansible-core version changes: `make test` runs them in the latest venv only (see the Makefile).
# Those that exercise ansible-core's side (check and diff mode, argument handling) run in both venvs, as do
# the role and playbook lab tests, which run this module through each ansible-core.


@pytest.fixture
def fw(lab):
    """The lab with fw1 and fw2's firewalld as `up` left them, before and after the test."""
    lab.reset_firewalls(MINE)
    yield lab
    lab.reset_firewalls(MINE)


def run_module(lab, args, host=HOST, check=False, diff=False, module=MODULE):
    command = [os.path.join(BIN, 'ansible'), host, '-i', lab.inventory, '-m', module, '-a', json.dumps(args), '-o']
    # The callbacks drop a result's diff below verbosity 3; the result line stays one line.
    command += (['--check'] if check else []) + (['--diff', '-vvv'] if diff else [])
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_LOAD_CALLBACK_PLUGINS='0')
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=config.REPO)
    for line in result.stdout.splitlines():
        if line.startswith(host + ' | ') and ' => ' in line:
            status, output = line.split(' => ', 1)
            return dict(json.loads(output), failed=' | FAILED' in status or ' | UNREACHABLE' in status)
    raise AssertionError('no result from %s:\n%s\n%s' % (host, result.stdout, result.stderr))


def apply(lab, plan, host=HOST, check=False, diff=False, **args):
    return run_module(lab, dict(args, rules=plan['rules']), host=host, check=check, diff=diff)


def ok(result):
    assert not result['failed'], result.get('msg')
    return result


def nft(lab, host=HOST):
    return lab.nft_ruleset(host)


def nft_sorted(lab, host=HOST):
    """The ruleset with each chain's lines sorted: rich rules land in nft in insertion order, which differs between
    a runtime change and a reload of the same permanent content."""
    return sorted(nft(lab, host).splitlines())


def etc_firewalld(lab, host=HOST):
    """{relative path: sha256} of the host's /etc/firewalld."""
    root = os.path.join(lab.hosts[host]['dir'], 'etc', 'firewalld')
    found = {}
    for directory, dummy, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, 'rb') as stream:
                found[os.path.relpath(path, root)] = hashlib.sha256(stream.read()).hexdigest()
    return found


def fwcmd(lab, *args, host=HOST):
    return lab.exec(host, ['firewall-cmd'] + list(args), check=True).stdout


def reaches(lab, host, address, port, protocol='tcp'):
    if protocol == 'quic':
        return lab.probe(host, 'quic', address, port, 'quic.cftunnel.com', timeout=1.5)['ok']
    return lab.probe(host, 'connect', address, port, *(['--udp'] if protocol == 'udp' else []), timeout=1.5)['ok']


def tunnel(plan, family='ipv4'):
    return [a for e in plan['endpoints'] if e['purpose'] == 'tunnel' for a in e[family]]


def entries(plan, purpose, family):
    """The ipset entries a purpose's rule should give: its CIDRs, hosts without /32 or /128, sorted."""
    rule = [r for r in plan['rules'] if r['purpose'] == purpose][0]
    return [re.sub('/(32|128)$', '', c) for c in rule[family]]


def ansible_ping(lab, host=HOST):
    return run_module(lab, {'data': 'pong'}, host=host, module='ansible.builtin.ping')


@pytest.mark.once
def test_default_deny_allows_exactly_the_plan_and_absent_restores(fw, plan):
    before_nft, before_files = nft(fw), etc_firewalld(fw)
    v4, v6 = tunnel(plan), tunnel(plan, 'ipv6')
    # Without our firewall the decoy answers: a refusal later is this host's firewall, not the edge.
    assert reaches(fw, HOST, DECOY['ipv4'], 7844) and reaches(fw, HOST, API_V4, 7844)

    result = ok(apply(fw, plan, default_deny=True))
    assert result['changed'] is True and result['reloaded'] is True
    assert result['policy'] == 'tunnelwall-egress'
    assert result['ipsets'] == ['tunnelwall-api-v4', 'tunnelwall-api-v6', 'tunnelwall-tunnel-v4', 'tunnelwall-tunnel-v6',
                                'tunnelwall-update-v4', 'tunnelwall-update-v6']
    assert result['nameservers'] == list(config.DNS_HOST_ADDRESSES)
    assert result['firewalld_added']['entries']['tunnelwall-tunnel-v4'] == entries(plan, 'tunnel', 'ipv4')
    assert result['firewalld_added']['entries']['tunnelwall-api-v6'] == entries(plan, 'api', 'ipv6')
    # The shape every backend returns: one allow rule per destination, DNS to the host's resolvers among them.
    added = {(r['purpose'], r['family'], r['protocol'], r['port'], r['destination']) for r in result['added']}
    assert {('tunnel', 'ipv4', p, 7844, a) for a in entries(plan, 'tunnel', 'ipv4') for p in ('tcp', 'udp')} <= added
    assert ('api', 'ipv6', 'tcp', 443, entries(plan, 'api', 'ipv6')[0]) in added
    assert {('dns', 'ipv4', p, 53, config.DNS_HOST_ADDRESSES[0]) for p in ('tcp', 'udp')} <= added
    assert result['removed'] == []
    assert 'rule priority="32767" reject' in result['rich_rules']

    # Allowed, with packets: TCP and QUIC on 7844 to the edge (both families), 443 to api and update.
    for address in (v4[0], v4[-1], v6[0], v6[-1]):
        assert reaches(fw, HOST, address, 7844), address
    assert reaches(fw, HOST, v4[0], 7844, 'quic') and reaches(fw, HOST, v6[-1], 7844, 'quic')
    assert reaches(fw, HOST, API_V4, 443) and reaches(fw, HOST, UPDATE_V4, 443)
    # DNS through the host's own resolver.
    resolved = fw.probe(HOST, 'resolve', 'region1.v2.argotunnel.com')
    assert resolved['ok'] and v4[0] in resolved['addresses'], resolved
    # Denied: the decoy on any port, 7844 on the api address, 443 on a tunnel address.
    for address, port in ((DECOY['ipv4'], 7844), (DECOY['ipv6'], 7844), (DECOY['ipv4'], 443), (API_V4, 7844), (v4[0], 443)):
        assert not reaches(fw, HOST, address, port), (address, port)
    assert not reaches(fw, HOST, DECOY['ipv4'], 7844, 'udp')
    # SSH from the controller: the session of every run, and a new one.
    assert ok(ansible_ping(fw))['ping'] == 'pong'
    # The other firewalld host is not affected.
    assert reaches(fw, 'fw2', DECOY['ipv4'], 7844)

    again = ok(apply(fw, plan, default_deny=True))
    assert again['changed'] is False and again['commands'] == [] and again['reloaded'] is False
    assert again['firewalld_added'] == {'entries': {}, 'rich_rules': []}
    assert again['firewalld_removed'] == {'entries': {}, 'rich_rules': []}
    assert again['added'] == [] and again['removed'] == []

    gone = ok(run_module(fw, {'state': 'absent'}))
    assert gone['changed'] is True and gone['reloaded'] is True
    assert nft(fw) == before_nft
    assert etc_firewalld(fw) == before_files
    assert reaches(fw, HOST, DECOY['ipv4'], 7844)
    assert ok(run_module(fw, {'state': 'absent'}))['changed'] is False


def test_check_and_diff_mode_report_the_change_and_touch_nothing(fw, plan):
    before_nft, before_files = nft(fw), etc_firewalld(fw)
    checked = ok(apply(fw, plan, check=True, diff=True, default_deny=True))
    assert checked['changed'] is True
    assert ['reload'] in checked['commands']
    runtime_diff = checked['diff'][0]
    assert runtime_diff['before'] == {'policy': None, 'ipsets': {}}
    assert 'rule priority="32767" reject' in runtime_diff['after']['policy']['rich_rules']
    assert runtime_diff['after']['ipsets']['tunnelwall-tunnel-v4'] == entries(plan, 'tunnel', 'ipv4')
    assert checked['diff'][1]['before_header'] == 'firewalld permanent'
    assert nft(fw) == before_nft and etc_firewalld(fw) == before_files

    applied = ok(apply(fw, plan, default_deny=True))
    assert applied['added'] == checked['added'] and applied['rich_rules'] == checked['rich_rules']
    applied_nft, applied_files = nft(fw), etc_firewalld(fw)

    # A rotation and default_deny switched off, in check mode: reported exactly, nothing changes.
    rotated = rotate(plan)
    checked = ok(apply(fw, rotated, check=True, diff=True, default_deny=False))
    assert checked['changed'] is True
    assert checked['firewalld_removed']['entries']['tunnelwall-tunnel-v4'] == [tunnel(plan)[0]]
    assert checked['firewalld_added']['entries']['tunnelwall-tunnel-v4'] == ['198.51.100.31']
    assert 'rule priority="32767" reject' in checked['firewalld_removed']['rich_rules']
    assert {r['destination'] for r in checked['added']} == {'198.51.100.31'}
    assert not any(c[0] in ('reload', 'write') for c in checked['commands'])  # an update in place, no reload
    assert checked['diff'][0]['before']['ipsets']['tunnelwall-tunnel-v4'] != checked['diff'][0]['after']['ipsets']['tunnelwall-tunnel-v4']
    assert nft(fw) == applied_nft and etc_firewalld(fw) == applied_files


def rotate(plan):
    """The plan after a DNS rotation: region1's first address gone, 198.51.100.31 (served by the lab edge) new."""
    rotated = copy.deepcopy(plan)
    dropped = tunnel(plan)[0] + '/32'
    for rule in rotated['rules']:
        if rule['purpose'] == 'tunnel':
            assert dropped in rule['ipv4'], rule
            rule['ipv4'] = sorted([c for c in rule['ipv4'] if c != dropped] + ['198.51.100.31/32'])
    return rotated


@pytest.mark.once
def test_rotation_removes_the_stale_and_adds_the_new(fw, plan):
    ok(apply(fw, plan, default_deny=True))
    dropped = tunnel(plan)[0]
    assert reaches(fw, HOST, dropped, 7844) and not reaches(fw, HOST, '198.51.100.31', 7844)
    rotated = rotate(plan)

    result = ok(apply(fw, rotated, default_deny=True))
    assert result['changed'] is True and result['reloaded'] is False
    assert result['firewalld_added'] == {'entries': {'tunnelwall-tunnel-v4': ['198.51.100.31']}, 'rich_rules': []}
    assert result['firewalld_removed'] == {'entries': {'tunnelwall-tunnel-v4': [dropped]}, 'rich_rules': []}
    assert result['added'] == [{'purpose': 'tunnel', 'family': 'ipv4', 'protocol': p, 'port': 7844,
                                'destination': '198.51.100.31'} for p in ('tcp', 'udp')]
    assert result['removed'] == [{'purpose': 'tunnel', 'family': 'ipv4', 'protocol': p, 'port': 7844,
                                  'destination': dropped} for p in ('tcp', 'udp')]
    # One atomic D-Bus call per layer for the ipset; no rich rule touched.
    assert [c[2].rsplit('.', 1)[-1] for c in result['commands']] == ['setEntries', 'setEntries']
    assert not reaches(fw, HOST, dropped, 7844) and reaches(fw, HOST, '198.51.100.31', 7844)
    assert reaches(fw, HOST, '198.51.100.31', 7844, 'quic')
    for layer in ([], ['--permanent']):
        entries = fwcmd(fw, *layer, '--ipset=tunnelwall-tunnel-v4', '--get-entries').split()
        assert '198.51.100.31' in entries and dropped not in entries, (layer, entries)
    # The permanent configuration says the same: a reload changes nothing that matters.
    runtime = nft_sorted(fw)
    fwcmd(fw, '--reload')
    assert nft_sorted(fw) == runtime
    assert ok(apply(fw, rotated, default_deny=True))['changed'] is False

    # A purpose dropped from the plan: its ipsets and rules go, in both layers.
    no_update = dict(rotated, rules=[r for r in rotated['rules'] if r['purpose'] != 'update'])
    result = ok(apply(fw, no_update, default_deny=True))
    assert result['changed'] is True and 'tunnelwall-update-v4' not in result['ipsets']
    assert not reaches(fw, HOST, UPDATE_V4, 443) and reaches(fw, HOST, API_V4, 443)
    assert 'tunnelwall-update-v4' not in fwcmd(fw, '--get-ipsets').split()
    assert 'tunnelwall-update-v4' not in fwcmd(fw, '--permanent', '--get-ipsets').split()


@pytest.mark.once
def test_objects_of_the_user_survive_every_run(fw, plan):
    # The user's own rich rule in the public zone, their own policy, and an ipset whose name shares the prefix.
    fwcmd(fw, '--permanent', '--zone=public', '--add-rich-rule=rule family="ipv4" source address="203.0.113.7" port port="8080" protocol="tcp" accept')
    fwcmd(fw, '--permanent', '--new-policy=mine')
    fwcmd(fw, '--permanent', '--policy=mine', '--add-ingress-zone=HOST')
    fwcmd(fw, '--permanent', '--policy=mine', '--add-egress-zone=ANY')
    fwcmd(fw, '--permanent', '--policy=mine', '--add-rich-rule=rule family="ipv4" destination address="203.0.113.9" port port="25" protocol="tcp" accept')
    fwcmd(fw, '--permanent', '--new-ipset=tunnelwall-notes', '--type=hash:ip')
    fwcmd(fw, '--permanent', '--ipset=tunnelwall-notes', '--add-entry=203.0.113.1')
    fwcmd(fw, '--reload')
    before_nft, before_files = nft(fw), etc_firewalld(fw)

    def user_objects_intact():
        for layer in ([], ['--permanent']):
            assert 'source address="203.0.113.7"' in fwcmd(fw, *layer, '--zone=public', '--list-rich-rules'), layer
            assert 'destination address="203.0.113.9"' in fwcmd(fw, *layer, '--policy=mine', '--list-rich-rules'), layer
            assert fwcmd(fw, *layer, '--ipset=tunnelwall-notes', '--get-entries').split() == ['203.0.113.1'], layer

    ok(apply(fw, plan, default_deny=True))
    user_objects_intact()
    ok(apply(fw, rotate(plan), default_deny=True, permanent=False))
    user_objects_intact()
    ok(run_module(fw, {'state': 'reverted'}))
    user_objects_intact()
    ok(run_module(fw, {'state': 'absent'}))
    user_objects_intact()
    assert nft(fw) == before_nft and etc_firewalld(fw) == before_files


@pytest.mark.once
def test_runtime_first_then_revert_or_persist(fw, plan):
    before_nft, before_files = nft(fw), etc_firewalld(fw)
    result = ok(apply(fw, plan, default_deny=True, permanent=False))
    assert result['changed'] is True
    assert not reaches(fw, HOST, DECOY['ipv4'], 7844) and reaches(fw, HOST, tunnel(plan)[0], 7844)
    # Only empty skeletons are permanent: no rule, no entry.
    assert fwcmd(fw, '--permanent', '--policy=tunnelwall-egress', '--list-rich-rules').strip() == ''
    assert fwcmd(fw, '--permanent', '--ipset=tunnelwall-tunnel-v4', '--get-entries').strip() == ''
    assert ok(apply(fw, plan, default_deny=True, permanent=False))['changed'] is False

    reverted = ok(run_module(fw, {'state': 'reverted'}))
    assert reverted['changed'] is True and reverted['reloaded'] is True
    assert nft(fw) == before_nft and etc_firewalld(fw) == before_files
    assert reaches(fw, HOST, DECOY['ipv4'], 7844)
    assert ok(run_module(fw, {'state': 'reverted'}))['changed'] is False

    # Runtime, then persist: no reload, same content permanently; a reload keeps the deny.
    ok(apply(fw, plan, default_deny=True, permanent=False))
    persisted = ok(apply(fw, plan, default_deny=True))
    assert persisted['changed'] is True and persisted['reloaded'] is False
    assert persisted['firewalld_added'] == {'entries': {}, 'rich_rules': []}  # the runtime already had it
    assert persisted['added'] == []
    runtime = nft_sorted(fw)
    fwcmd(fw, '--reload')
    assert nft_sorted(fw) == runtime
    assert not reaches(fw, HOST, DECOY['ipv4'], 7844)

    # A runtime-only rotation on top of a persisted state, reverted: back to the persisted state exactly.
    persisted_nft = nft(fw)
    rotated = ok(apply(fw, rotate(plan), default_deny=True, permanent=False))
    assert rotated['changed'] is True and reaches(fw, HOST, '198.51.100.31', 7844)
    ok(run_module(fw, {'state': 'reverted'}))
    assert nft(fw) == persisted_nft and not reaches(fw, HOST, '198.51.100.31', 7844)


@pytest.mark.once
def test_a_failure_midway_restores_the_previous_state(fw, plan):
    """A real failure: /etc/firewalld/ipsets is read-only (as on a read-only /etc), so firewalld cannot write the permanent
    ipset after the runtime already changed. The module must put everything back."""
    ok(apply(fw, plan, default_deny=True))
    before_nft, before_files = nft(fw), etc_firewalld(fw)
    ipsets = '/etc/firewalld/ipsets'
    fw.exec(HOST, ['sh', '-c', 'mount --bind %s %s && mount -o remount,ro,bind %s' % (ipsets, ipsets, ipsets)], check=True)
    try:
        result = apply(fw, rotate(plan), default_deny=False)
    finally:
        fw.exec(HOST, ['umount', ipsets], check=True)
    assert result['failed'] is True
    assert 'rolled back' in result['msg'] and 'setEntries' in result['msg'], result['msg']
    assert any('setEntries' in ' '.join(c) for c in result['commands'])  # the runtime had changed before the failure
    # A reload may order a chain's rules differently from the runtime changes that built the same content.
    assert sorted(nft(fw).splitlines()) == sorted(before_nft.splitlines())
    assert etc_firewalld(fw) == before_files
    assert not reaches(fw, HOST, DECOY['ipv4'], 7844) and reaches(fw, HOST, tunnel(plan)[0], 7844)


@pytest.mark.once
def test_two_runs_at_once_do_not_corrupt_each_other(fw, plan):
    results = []
    threads = [threading.Thread(target=lambda p=p: results.append(apply(fw, p, default_deny=True))) for p in (plan, plan)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(not r['failed'] for r in results), [r.get('msg') for r in results]
    assert sorted(r['changed'] for r in results) == [False, True]
    assert ok(apply(fw, plan, default_deny=True))['changed'] is False


def test_bad_input_fails_naming_option_and_value_and_changes_nothing(fw, plan):
    before_nft = nft(fw)
    cases = [
        ({'name': 'much-too-long-name'}, "name='much-too-long-name'"),
        ({'name': 'bad name'}, "name='bad name'"),
        ({'rules': [dict(plan['rules'][0], ipv4=['198.51.100.300/32'])]}, "rules[0].ipv4[0]='198.51.100.300/32'"),
        ({'rules': [dict(plan['rules'][0], port=0)]}, 'rules[0].port=0'),
        ({'rules': [dict(plan['rules'][0], protocol='icmp')]}, 'protocol'),
        ({'extra_allow': [{'protocol': 'udp', 'port': 123, 'destinations': ['ntp.example.org']}]}, "'ntp.example.org'"),
        ({'default_deny': True, 'rules': [r for r in plan['rules'] if r['purpose'] != 'tunnel']}, 'default_deny=True: no tunnel destination'),
    ]
    for args, expected in cases:
        result = run_module(fw, dict({'rules': plan['rules']}, **args))
        assert result['failed'] is True and expected in result['msg'], (args, result['msg'])
    assert nft(fw) == before_nft


@pytest.mark.once
def test_an_ipset_of_more_than_10000_entries_loads_reruns_unchanged_and_allows(fw, plan, tmp_path):
    # Issue 13: one ipset went to dbus-send as ONE argument; over Linux's 128 KiB per argument (about 9,500 IPv4 /24s,
    # 7,000 IPv6 /128s) the command could not even start (E2BIG). 10,001 /128s, every other address so that none
    # collapse into a shorter prefix: about 190 KiB of entries.
    big = [str(ipaddress.ip_address('2001:db8:100::') + 2 * n) for n in range(10001)]
    rules = copy.deepcopy(plan['rules'])
    tcp = [r for r in rules if r['purpose'] == 'tunnel' and r['protocol'] == 'tcp'][0]
    planned = [re.sub('/128$', '', c) for c in tcp['ipv6']]
    tcp['ipv6'] = tcp['ipv6'] + [a + '/128' for a in big]
    # On the command line the options would hit the same limit: they go in a file of extra vars.
    # The TCP rule's IPv6 destinations now differ from the UDP rule's: the TCP ones get their own ipset.
    big_set = 'tunnelwall-tunnel-tcp7844-v6'
    (tmp_path / 'vars.json').write_text(json.dumps({'big_rules': rules}))
    command = [os.path.join(BIN, 'ansible'), HOST, '-i', fw.inventory, '-m', MODULE, '-o', '-e', '@%s' % (tmp_path / 'vars.json'),
               '-a', json.dumps({'rules': '{{ big_rules }}', 'default_deny': True})]
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_LOAD_CALLBACK_PLUGINS='0')

    def run():
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=config.REPO)
        line = [l for l in done.stdout.splitlines() if l.startswith(HOST + ' | ')]
        assert line and ' | FAILED' not in line[0], (done.stdout[-3000:], done.stderr[-3000:])
        return json.loads(line[0].split(' => ', 1)[1])

    started = time.monotonic()
    first = run()
    took = time.monotonic() - started
    assert first['changed'] is True
    assert len(first['firewalld_added']['entries'][big_set]) == len(big) + len(planned)
    # A first apply writes the new ipset's file and reloads once: no command carries the entries.
    assert not [c for c in first['commands'] if len(' '.join(c)) > 64 * 1024], first['commands']
    for layer in ([], ['--permanent']):
        loaded = set(fwcmd(fw, *layer, '--ipset=' + big_set, '--get-entries').split())
        assert set(big) <= loaded and set(planned) <= loaded, layer
    assert big[-1] in fw.exec(HOST, ['nft', 'list', 'set', 'inet', 'firewalld', big_set], check=True).stdout
    # An allowed address connects; the rest is still refused.
    assert reaches(fw, HOST, tunnel(plan, 'ipv6')[0], 7844) and reaches(fw, HOST, tunnel(plan)[0], 7844)
    assert not reaches(fw, HOST, DECOY['ipv6'], 7844)
    again = run()
    assert again['changed'] is False and again['commands'] == []
    # A change of the existing set: loaded from files by firewall-cmd, in both layers; not one huge argument.
    tcp['ipv6'] = tcp['ipv6'][:-1] + ['2001:db8:200::1/128']
    (tmp_path / 'vars.json').write_text(json.dumps({'big_rules': rules}))
    changed = run()
    from_files = [c for c in changed['commands'] if c[0] == 'firewall-cmd' and c[-1].startswith('--add-entries-from-file=')]
    assert [c[1] for c in from_files] == ['--ipset=' + big_set, '--permanent'], changed['commands']
    for layer in ([], ['--permanent']):
        loaded = set(fwcmd(fw, *layer, '--ipset=' + big_set, '--get-entries').split())
        assert '2001:db8:200::1' in loaded and big[-1] not in loaded, layer
    print('\nfirewalld_egress, %d IPv6 entries in one ipset: first apply %.1fs' % (len(big), took))


@pytest.mark.once
def test_timing_40_destinations(fw):
    """Not an assertion of speed: prints first apply and rerun wall times for 40 destinations (20 IPv4, 20 IPv6)."""
    v4 = ['198.51.100.%d/32' % (100 + 2 * n) for n in range(20)]
    v6 = ['2001:db8:e::%x/128' % (0x100 + 2 * n) for n in range(20)]
    rules = [{'purpose': 'tunnel', 'protocol': p, 'port': 7844, 'ipv4': v4[:10], 'ipv6': v6[:10]} for p in ('tcp', 'udp')]
    rules += [{'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': v4[10:15], 'ipv6': v6[10:15]},
              {'purpose': 'update', 'protocol': 'tcp', 'port': 443, 'ipv4': v4[15:], 'ipv6': v6[15:]}]
    times = {}
    for label in ('first apply', 'rerun'):
        started = time.monotonic()
        result = ok(run_module(fw, {'rules': rules, 'default_deny': True}))
        times[label] = time.monotonic() - started
        assert result['changed'] is (label == 'first apply')
    started = time.monotonic()
    ok(ansible_ping(fw))
    times['ansible ping (overhead)'] = time.monotonic() - started
    print('\nfirewalld_egress, 40 destinations: ' + ', '.join('%s %.2fs' % item for item in times.items()))


@pytest.mark.once
def test_a_policy_of_our_name_the_module_did_not_create_is_refused_and_untouched(fw, plan):
    """Another tool's policy called tunnelwall-egress (no description of ours): refused before anything changes."""
    fwcmd(fw, '--permanent', '--new-policy=tunnelwall-egress')
    fwcmd(fw, '--permanent', '--policy=tunnelwall-egress', '--add-ingress-zone=HOST')
    fwcmd(fw, '--permanent', '--policy=tunnelwall-egress', '--add-egress-zone=ANY')
    fwcmd(fw, '--permanent', '--policy=tunnelwall-egress', '--add-rich-rule=rule family="ipv4" destination address="203.0.113.9" drop')
    fwcmd(fw, '--reload')
    before_nft, before_files = nft(fw), etc_firewalld(fw)
    for args in ({'default_deny': True}, {'state': 'absent'}):
        result = run_module(fw, dict(args, rules=plan['rules']) if 'state' not in args else args)
        assert result['failed'] and 'policy tunnelwall-egress of name tunnelwall: not created by this module' in result['msg'], result
        assert nft(fw) == before_nft and etc_firewalld(fw) == before_files


@pytest.mark.once
def test_a_runtime_only_rule_of_another_tool_survives_apply_commit_and_restore(fw, plan):
    """fail2ban's firewallcmd-rich-rules action, or a rule added by hand: runtime only. The first apply reloads
    firewalld (new objects), the commit persists, a failed verification restores (a reload): the rule stays."""
    ban = 'rule family="ipv4" source address="203.0.113.55" reject'
    fwcmd(fw, '--zone=public', '--add-rich-rule=' + ban)

    def kept(when):
        assert ban in fwcmd(fw, '--zone=public', '--list-rich-rules'), when
        assert ban not in fwcmd(fw, '--permanent', '--zone=public', '--list-rich-rules'), when  # still runtime only

    first = ok(apply(fw, plan, default_deny=True))
    assert first['reloaded'] is True
    # Read over D-Bus before the reload, added back after it (the module's path; the dead-man's uses firewall-cmd).
    reload_at = first['commands'].index(['dbus-send', '/org/fedoraproject/FirewallD1', 'org.fedoraproject.FirewallD1.reload'])
    assert first['commands'][reload_at + 1] == ['firewall-cmd', '--zone=public', '--add-rich-rule=' + ban]
    kept('after the first apply and its commit')
    fw.fault('udp7844', 'drop', HOST)
    fw.fault('tcp7844', 'drop', HOST)
    try:
        failed = apply(fw, rotate(plan), default_deny=True, verify={'plan': plan, 'timeout': 1.5, 'ca_path': fw.ca})
    finally:
        fw.reset()
    assert failed['failed'] and 'Rolled back: the firewall is as before this run' in failed['msg'], failed
    kept('after the restore')
    ok(run_module(fw, {'state': 'absent'}))
    kept('after state=absent')


STANDIN = '/run/tunnelwall-standin'
# A firewall-cmd that writes the permanent rich rules the module asks for, then SIGKILLs the module - between the
# permanent write and the confirmation - once (the dead-man's own firewall-cmd calls go through untouched).
KILLING_FIREWALL_CMD = r'''#!/bin/sh
if [ "$1" = --permanent ] && [ ! -e %(dir)s/killed ]; then
  case "$*" in
    *--add-rich-rule=*) /usr/bin/firewall-cmd "$@"; rc=$?; touch %(dir)s/killed; kill -9 $PPID; exit $rc;;
  esac
fi
exec /usr/bin/firewall-cmd "$@"
''' % {'dir': STANDIN}


DHCP_RULE = 'rule family="ipv4" source-port port="68" protocol="udp" accept'


def pending(lab, host=HOST):
    text = lab.exec(host, ['cat', '/etc/firewalld/tunnelwall-pending.json']).stdout
    return json.loads(text) if text.strip() else None


@pytest.mark.once
@pytest.mark.parametrize('undone_by', ['dead-man', 'next run'])
def test_a_run_killed_during_the_commit_is_undone_and_a_runtime_rule_of_another_tool_stays(fw, plan, tmp_path, undone_by):
    """Issue 18: the module dies after firewalld's permanent configuration was written and before the confirmation.
    The dead-man revert (or, with it off, the next run) brings back the previous state in both layers, and a
    runtime-only rich rule another tool added (fail2ban's ban) survives the restore's reload."""
    ok(apply(fw, plan))  # committed: allow rules, no default deny
    ban = 'rule family="ipv4" source address="203.0.113.55" reject'
    fwcmd(fw, '--zone=public', '--add-rich-rule=' + ban)
    before = nft_sorted(fw), etc_firewalld(fw)
    fw.exec(HOST, ['sh', '-c', 'mkdir -p %s && cat > %s/firewall-cmd && chmod 755 %s/firewall-cmd' % (STANDIN, STANDIN, STANDIN)],
            stdin=KILLING_FIREWALL_CMD, check=True)
    try:
        # default_deny switched on: new rich rules, added to the runtime at apply and to the permanent layer at commit.
        args = dict(rules=plan['rules'], default_deny=True, confirm_timeout=3 if undone_by == 'dead-man' else 0)
        task = {'name': 'egress change', MODULE: args, 'environment': {'PATH': STANDIN + ':' + config.HOST_PATH}}
        playbook = tmp_path / 'killed.yml'
        playbook.write_text(json.dumps([{'hosts': HOST, 'gather_facts': False, 'tasks': [task]}]))
        done = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', fw.inventory, str(playbook)], capture_output=True,
                              text=True, timeout=300, check=False, cwd=config.REPO, env=dict(os.environ, ANSIBLE_NOCOLOR='1'))
        assert done.returncode != 0, done.stdout
        assert fw.exec(HOST, ['test', '-e', STANDIN + '/killed']).returncode == 0, done.stdout  # killed in the commit
        record = pending(fw)
        if undone_by == 'dead-man':
            deadline = time.monotonic() + 20
            while record is not None and time.monotonic() < deadline:
                time.sleep(0.2)
                record = pending(fw)
            assert record is None, 'the dead-man revert did not restore'
        else:
            assert record is not None and record['armed'] is None
            # The permanent layer holds the killed run's first rules (the allows; the reject would come in a second
            # call): the kill came after a permanent write, in the middle of the commit.
            assert DHCP_RULE in fwcmd(fw, '--permanent', '--policy=tunnelwall-egress', '--list-rich-rules')
            again = ok(apply(fw, plan))
            assert again['transaction']['settled'].startswith('a previous run'), again['transaction']
            assert again['changed'] is False  # the restore already gave back exactly what this run asks for
    finally:
        fw.exec(HOST, ['rm', '-rf', STANDIN])
    assert (nft_sorted(fw), etc_firewalld(fw)) == before
    permanent = fwcmd(fw, '--permanent', '--policy=tunnelwall-egress', '--list-rich-rules')
    assert 'rule priority="32767" reject' not in permanent and DHCP_RULE not in permanent
    assert ban in fwcmd(fw, '--zone=public', '--list-rich-rules')
    assert ban not in fwcmd(fw, '--permanent', '--zone=public', '--list-rich-rules')
