# -*- coding: utf-8 -*-
"""edge_probe run by Ansible over SSH on lab hosts, against the fake edge, with faults switched on and off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.lab import config

BIN = os.path.dirname(sys.executable)
HOST = 'none1'  # a lab host without a firewall of its own: only the edge's faults decide
REPO = config.REPO

# Tests marked `once` prove what the probe finds behind each fault of the fake edge - datagrams, handshakes, DNS -
# which no ansible-core version changes: `make test` runs them in the latest venv only (see the Makefile).
# A plain run, check mode and bad input go through ansible-core's side and run in both venvs.


def run_module(lab, module, args, host=HOST, check=False):
    """Run one module on a lab host with ad-hoc ``ansible``; return its result, failed or not."""
    command = [os.path.join(BIN, 'ansible'), host, '-i', lab.inventory, '-m', module, '-a', json.dumps(args), '-o']
    command += ['--check'] if check else []
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_LOAD_CALLBACK_PLUGINS='0')
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=REPO)
    for line in result.stdout.splitlines():
        if line.startswith(host + ' | ') and ' => ' in line:
            status, output = line.split(' => ', 1)
            return dict(json.loads(output), failed=' | FAILED' in status)
    raise AssertionError('no result from %s:\n%s\n%s' % (host, result.stdout, result.stderr))


def probe(lab, plan, check=False, **args):
    args.setdefault('ca_path', lab.ca)
    args.setdefault('timeout', 1.5)
    return run_module(lab, 'tunnelwall.cloudflared.edge_probe', dict(args, plan=plan), check=check)


def rows(result, **where):
    return [r for r in result['results'] if all(r[k] == v for k, v in where.items())]


def kinds(result, **where):
    return {r['error_kind'] for r in rows(result, **where)}


def test_all_open_everything_answers_and_quic_is_recommended(lab, plan):
    result = probe(lab, plan)
    assert not result['failed'], result.get('msg')
    assert result['changed'] is False
    assert result['families'] == ['ipv4', 'ipv6']
    assert result['results'] and all(r['ok'] for r in result['results']), [r for r in result['results'] if not r['ok']]
    addresses = sum((len(e['ipv4']) + len(e['ipv6']) for e in plan['endpoints'] if e['purpose'] == 'tunnel'), 0)
    assert len(rows(result, check='quic')) == addresses
    assert len(rows(result, check='tls')) == addresses
    assert {r['check'] for r in rows(result, purpose='api')} == {'tcp', 'https'}
    assert result['recommended_protocol'] == 'quic'
    assert 'region1.v2.argotunnel.com (6/6 addresses)' in result['recommendation_reason']
    assert result['dns']['findings'] == []
    assert {a['name'] for a in result['dns']['answers'] if a['ok']} >= {'_v2-origintunneld._tcp.argotunnel.com'}
    assert all(r['message'].startswith('QUIC handshake answered') for r in rows(result, check='quic'))


@pytest.mark.once
def test_udp_dropped_quic_times_out_and_http2_is_recommended(lab, plan):
    lab.fault('udp7844', 'drop')
    result = probe(lab, plan)
    assert not result['failed'], result.get('msg')
    assert kinds(result, check='quic') == {'timeout'}
    assert all(r['latency_ms'] >= 1400 for r in rows(result, check='quic'))
    assert all(r['ok'] for r in rows(result, check='tls'))
    assert result['recommended_protocol'] == 'http2'
    assert 'no QUIC answer on UDP 7844' in result['recommendation_reason']


@pytest.mark.once
def test_datagrams_just_below_cloudflareds_initials_fail_quic_with_the_size(lab, plan):
    # cloudflared pads its Initials to 1232 bytes (IPv4) and 1252 (IPv6); 1231 lets only smaller ones through.
    lab.fault('quic-size', '1231')
    result = probe(lab, plan, purposes=['tunnel'])
    assert not result['failed'], result.get('msg')
    assert kinds(result, check='quic') == {'quic_size'}
    messages = {r['family']: r['message'] for r in rows(result, check='quic')}
    assert "cloudflared's 1232-byte UDP datagrams (1260-byte IPv4 packets" in messages['ipv4']
    assert "cloudflared's 1252-byte UDP datagrams (1300-byte IPv6 packets" in messages['ipv6']
    assert all('packet size / path MTU' in m for m in messages.values())
    assert result['recommended_protocol'] == 'http2'
    assert 'packet size / path MTU' in result['recommendation_reason']
    assert result['recommended_settings']['protocol']['value'] == 'http2'
    assert result['recommended_settings']['edge_ip_version']['value'] == 'auto'
    assert [(e['purpose'], e['protocol'], e['port']) for e in result['to_open']] == [('tunnel', 'udp', 7844)]
    # Every size cloudflared sends is lost: the tunnel's (1232 / 1252) and the pre-check's (1280).
    assert {(f['flight'], f['answered']) for r in rows(result, check='quic') for f in r['flights']} == {
        ('cloudflared', False), ('precheck', False), ('single', False), ('small', True)}


@pytest.mark.once
def test_a_size_limit_between_the_families_recommends_the_family_that_passes(lab, plan):
    # 1240 bytes pass cloudflared's IPv4 Initials (1232) and drop its IPv6 ones (1252).
    lab.fault('quic-size', '1240')
    result = probe(lab, plan, purposes=['tunnel'])
    assert kinds(result, check='quic', family='ipv4') == {None}
    assert kinds(result, check='quic', family='ipv6') == {'quic_size'}
    assert all("the pre-check's 1280-byte Initials got no answer" in r['message']
               for r in rows(result, check='quic', family='ipv4'))
    settings = result['recommended_settings']
    assert (settings['protocol']['value'], settings['edge_ip_version']['value']) == ('quic', '4')
    assert 'may choose IPv6, which is blocked here' in settings['edge_ip_version']['reason']


@pytest.mark.once
def test_datagrams_above_cloudflareds_initials_pass(lab, plan):
    lab.fault('quic-size', '1252')
    result = probe(lab, plan, purposes=['tunnel'], checks=['quic'])
    assert all(r['ok'] for r in result['results']), [r for r in result['results'] if not r['ok']]
    assert {(r['family'], r['initial_size'], r['initials']) for r in result['results']} == {
        ('ipv4', 1232, 2), ('ipv6', 1252, 2)}
    assert result['recommended_protocol'] == 'quic'
    # 1252 passes the tunnel's Initials but not the pre-check's 1280-byte ones: the row says so.
    assert {(f['flight'], f['size'], f['answered']) for r in result['results'] for f in r['flights']} == {
        ('cloudflared', 1232, True), ('cloudflared', 1252, True), ('precheck', 1280, False)}
    assert all("cloudflared's start-up pre-check reports QUIC as failed" in r['message'] for r in result['results'])


@pytest.mark.once
def test_datagrams_of_the_precheck_size_pass_every_flight(lab, plan):
    lab.fault('quic-size', '1280')
    result = probe(lab, plan, purposes=['tunnel'], checks=['quic'])
    assert all(r['ok'] for r in result['results']), [r for r in result['results'] if not r['ok']]
    assert {(f['flight'], f['size'], f['answered']) for r in result['results'] for f in r['flights']} == {
        ('cloudflared', 1232, True), ('cloudflared', 1252, True), ('precheck', 1280, True)}


@pytest.mark.once
def test_a_path_passing_only_the_precheck_size_fails_quic_naming_both(lab, plan):
    lab.fault('quic-exact', '1280')
    result = probe(lab, plan, purposes=['tunnel'])
    assert kinds(result, check='quic') == {'quic_size'}
    assert all("the pre-check's 1280-byte ones were answered" in r['message'] for r in rows(result, check='quic'))
    assert result['recommended_protocol'] == 'http2'


@pytest.mark.once
def test_a_path_losing_cloudflareds_large_tcp_hello_fails_http2_naming_the_size(lab, plan):
    # TCP packets to 7844 over 1000 bytes are dropped: Python's short hello passes, cloudflared's ~1.4 KB one dies.
    lab.fault('tls-size', '1000')
    result = probe(lab, plan, purposes=['tunnel'], require=['http2'])
    assert result['failed'] is True
    assert all(r['ok'] for r in rows(result, check='tcp'))
    tls = rows(result, check='tls')
    assert tls and {r['error_kind'] for r in tls} == {'tls_size'}
    size = tls[0]['hello_size']
    assert 1400 < size < 1500
    assert all(("cloudflared's %d-byte post-quantum ClientHello got no answer" % size) in r['message'] for r in tls)
    assert all('while a short ClientHello was answered' in r['message'] for r in tls)
    assert result['unmet_requirements'][0].startswith('http2: tls tcp/7844 tls_size: ')
    assert result['recommended_protocol'] == 'quic'  # UDP is open: QUIC still works
    # Without the fault the same check passes, the large hello answered (the lab's OpenSSL asks for P-256 again).
    lab.reset()
    clean = probe(lab, plan, purposes=['tunnel'], checks=['tls'])
    assert all(r['ok'] and 'ClientHello answered (HelloRetryRequest)' in r['message'] for r in clean['results'])


@pytest.mark.once
def test_only_the_first_initial_of_a_flow_passing_fails_quic(lab, plan):
    lab.fault('quic-split')
    result = probe(lab, plan, purposes=['tunnel'])
    assert kinds(result, check='quic') == {'quic_multi_initial'}
    assert all('drops the second Initial' in r['message'] for r in rows(result, check='quic'))
    assert result['recommended_protocol'] == 'http2'


@pytest.mark.once
def test_udp_rejected_fails_fast_as_refused(lab, plan):
    lab.fault('udp7844', 'reject')
    result = probe(lab, plan)
    assert kinds(result, check='quic') == {'refused'}
    assert all(r['latency_ms'] < 500 for r in rows(result, check='quic'))
    assert result['recommended_protocol'] == 'http2'


@pytest.mark.once
def test_tcp_dropped_udp_open_still_quic(lab, plan):
    lab.fault('tcp7844', 'drop')
    result = probe(lab, plan)
    assert kinds(result, check='tcp', purpose='tunnel') == {'timeout'}
    assert kinds(result, check='tls') == {'timeout'}
    assert all(r['ok'] for r in rows(result, check='quic'))
    assert result['recommended_protocol'] == 'quic'


@pytest.mark.once
def test_everything_blocked_fails_naming_what_to_open(lab, plan):
    lab.fault('udp7844', 'drop')
    lab.fault('tcp7844', 'reject')
    result = probe(lab, plan)
    assert result['failed'] is True
    assert result['recommended_protocol'] == 'none'
    assert kinds(result, check='tcp', purpose='tunnel') == {'refused'}
    message = result['msg']
    assert message.startswith('edge_probe: not met: any_tunnel:')
    assert 'open outbound UDP 7844 to 198.51.100.11/32' in message
    assert 'open outbound TCP 7844 to 198.51.100.11/32' in message
    assert '2001:db8:e::11/128' in message


@pytest.mark.once
def test_api_down_fails_only_api_and_its_requirement(lab, plan):
    lab.fault('api', 'drop')
    result = probe(lab, plan)
    assert not result['failed'], result.get('msg')
    assert kinds(result, purpose='api') == {'timeout'}
    assert all(r['ok'] for r in rows(result, purpose='tunnel'))
    failed = probe(lab, plan, require=['api'])
    assert failed['failed'] is True
    assert failed['unmet_requirements'][0].startswith('api: ')
    assert 'open outbound TCP 443 to 198.51.100.80/32, 2001:db8:e::80/128 (api)' in failed['msg']


@pytest.mark.once
def test_ipv6_only(lab, plan):
    result = probe(lab, plan, ip_version='6')
    assert result['families'] == ['ipv6']
    assert {r['family'] for r in result['results']} == {'ipv6'}
    assert all(r['ok'] for r in result['results'])
    assert all(a['type'] != 'A' for a in result['dns']['answers'])


@pytest.mark.once
def test_wrong_sni_and_untrusted_ca_are_tls_errors(lab, plan):
    wrong = probe(lab, plan, checks=['tls'], server_names={'tcp': 'wrong.example.org'}, require=[])
    assert kinds(wrong, check='tls') == {'tls_certificate'}
    assert 'wrong.example.org' in rows(wrong, check='tls')[0]['message']
    untrusted = probe(lab, plan, checks=['tls', 'https'], ca_path=None, require=[])
    assert kinds(untrusted, check='tls') == {'tls_certificate'} and kinds(untrusted, check='https') == {'tls_certificate'}
    # Without validation the same handshakes succeed: the edge is there, only trust is missing.
    relaxed = probe(lab, plan, checks=['tls'], ca_path=None, validate_certs=False)
    assert all(r['ok'] for r in relaxed['results'])


@pytest.mark.once
def test_dns_blocked_on_the_host_is_a_finding(lab, plan):
    lab.fault('dns', 'timeout')
    result = probe(lab, plan)
    assert not result['failed'], result.get('msg')  # probing by address still works
    findings = result['dns']['findings']
    assert findings and {f['kind'] for f in findings} == {'unresolvable', 'txt_blocked'}
    assert {f['error_kind'] for f in findings} == {'timeout'}
    failed = probe(lab, plan, require=['dns'])
    assert failed['failed'] is True and failed['unmet_requirements'][0].startswith('dns: ')


@pytest.mark.once
def test_cloudflareds_txt_questions_blocked_is_a_finding_absent_is_not(lab, plan):
    clean = probe(lab, plan, checks=['dns'], require=[])
    states = {a['name']: a['state'] for a in clean['dns']['answers'] if a['type'] == 'TXT'}
    assert states == {'cfd-features.argotunnel.com': 'ok', 'protocol-v2.argotunnel.com': 'absent'}
    assert clean['dns']['findings'] == []
    lab.fault('dns', 'refused', 'cfd-features.argotunnel.com/TXT')
    lab.fault('dns', 'timeout', 'protocol-v2.argotunnel.com/TXT')
    blocked = probe(lab, plan, checks=['dns'], require=[])
    assert sorted((f['kind'], f['name'], f['error_kind']) for f in blocked['dns']['findings']) == [
        ('txt_blocked', 'cfd-features.argotunnel.com', 'dns_refused'),
        ('txt_blocked', 'protocol-v2.argotunnel.com', 'timeout')]


@pytest.mark.once
def test_dns_rotation_shows_drift_both_ways(lab, plan):
    lab.fault('dns', 'rotate')
    result = probe(lab, plan, checks=['dns'], require=[])
    drift = {(f['kind'], f['hostname'], f['family']) for f in result['dns']['findings']}
    assert ('not_in_plan', 'region1.v2.argotunnel.com', 'ipv4') in drift
    assert ('not_seen', 'region1.v2.argotunnel.com', 'ipv6') in drift


@pytest.mark.once
def test_one_region_down_still_quic_with_less_redundancy(lab, plan):
    lab.fault('region', 'region2', 'drop')
    result = probe(lab, plan, purposes=['tunnel'])
    assert result['recommended_protocol'] == 'quic'
    assert 'no QUIC answer from region2.v2.argotunnel.com' in result['recommendation_reason']
    assert kinds(result, hostname='region2.v2.argotunnel.com') == {'timeout'}
    # cloudflared's pre-check suggests a protocol only when every region passes it: here none, and the reason says so.
    protocol = result['recommended_settings']['protocol']
    assert protocol['value'] == 'quic'
    assert 'not from region2.v2.argotunnel.com' in protocol['reason'] and 'suggests no protocol' in protocol['reason']


@pytest.mark.once
def test_quic_dropped_recommends_http2_saying_what_it_loses(lab, plan):
    lab.fault('udp7844', 'drop')
    result = probe(lab, plan, purposes=['tunnel'])
    protocol = result['recommended_settings']['protocol']
    assert protocol['value'] == 'http2'
    assert protocol['reason'].endswith('loses WARP-routed UDP, ICMP and private DNS resolution, which need QUIC '
                                       '(supervisor/tunnel.go)')


def test_check_mode_gives_the_same_results(lab, plan):
    lab.fault('udp7844', 'reject')
    normal = probe(lab, plan, checks=['quic', 'tls'])
    checked = probe(lab, plan, checks=['quic', 'tls'], check=True)

    def outcome(result):
        return sorted((r['address'], r['check'], r['ok'], r['error_kind']) for r in result['results'])
    assert outcome(checked) == outcome(normal)
    assert checked['recommended_protocol'] == normal['recommended_protocol'] == 'http2'


def test_bad_input_fails_naming_the_option(lab, plan):
    result = probe(lab, plan, timeout=0)
    assert result['failed'] is True and 'timeout=0' in result['msg']
    result = run_module(lab, 'tunnelwall.cloudflared.edge_probe', {'targets': [
        {'address': '198.51.100.11', 'port': 7844, 'check': 'quic'}]})
    assert result['failed'] is True and 'needs a server_name' in result['msg']


@pytest.mark.once
def test_tunnel_trust_over_ansible_is_the_system_store_plus_the_roots_or_ca_path_alone(lab, plan, tmp_path):
    # On a lab host, through Ansible: OpenSSL's SSL_CERT_FILE makes the lab CA the host's system store.
    import trustme
    other = tmp_path / 'other-ca.pem'
    trustme.CA().cert_pem.write_to_path(str(other))
    probe_args = {'plan': plan, 'checks': ['tls', 'https'], 'purposes': ['tunnel', 'api'], 'timeout': 1.5,
                  'require': []}
    tasks = [
        # The system store holds the lab CA: trusted, on 7844 (store + the three roots) and on 443 (store).
        {'environment': {'SSL_CERT_FILE': lab.ca}, 'args': {}},
        # ca_path replaces the store and the three roots, as --cacert does: the lab CA in the store no longer counts.
        {'environment': {'SSL_CERT_FILE': lab.ca}, 'args': {'ca_path': str(other)}},
        # An empty store: the three Cloudflare roots alone do not accept the lab's chain.
        {'environment': {'SSL_CERT_FILE': os.devnull}, 'args': {}},
    ]
    playbook, output = tmp_path / 'trust.yml', tmp_path / 'results.json'
    steps = [{'tunnelwall.cloudflared.edge_probe': dict(probe_args, **task['args']), 'environment': task['environment'],
              'register': 'probe%d' % index} for index, task in enumerate(tasks)]
    steps.append({'ansible.builtin.copy': {'content': '{{ [probe0, probe1, probe2] | to_json }}', 'dest': str(output)},
                  'delegate_to': 'localhost'})
    playbook.write_text(json.dumps([{'hosts': HOST, 'gather_facts': False, 'tasks': steps}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR='1')
    completed = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', lab.inventory, str(playbook)],
                               capture_output=True, text=True, env=env, timeout=300, check=False, cwd=REPO)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(output.read_text())
    store, replaced, empty = ({r['check']: {x['error_kind'] for x in result['results'] if x['check'] == r['check']}
                               for r in result['results']} for result in results)
    assert store == {'tls': {None}, 'https': {None}}, results[0]['results']
    assert replaced == {'tls': {'tls_certificate'}, 'https': {'tls_certificate'}}
    assert empty == {'tls': {'tls_certificate'}, 'https': {'tls_certificate'}}
