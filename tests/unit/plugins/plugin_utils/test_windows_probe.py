# -*- coding: utf-8 -*-
"""The controller's half of win_edge_probe, for real: the datagrams it builds and the report it writes."""

from __future__ import annotations

import base64

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import aes_gcm, quic_initial
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_probe

from tests.unit.plugins.module_utils.test_probe_report import PLAN
from tests.unit.plugins.module_utils.test_quic_initial import A3_PROTECTED, CLIENT_DCID


def params(**values):
    base = {'plan': PLAN, 'targets': None, 'checks': None, 'purposes': None, 'ip_version': 'auto', 'timeout': 2.5,
            'concurrency': 64, 'validate_certs': True, 'ca_path': None, 'server_names': {}, 'require': ['any_tunnel']}
    base.update(values)
    return base


def decrypt_client_initial(datagram, dcid):
    key, iv, hp = quic_initial.initial_keys(dcid)
    pn_offset = 6 + datagram[5] + 1 + datagram[6 + datagram[5]] + 1 + 2
    mask = aes_gcm.aes_ecb_block(hp, datagram[pn_offset + 4:pn_offset + 20])
    first = datagram[0] ^ (mask[0] & 0x0F)
    header = bytes([first]) + datagram[1:pn_offset] + bytes(b ^ m for b, m in zip(datagram[pn_offset:pn_offset + 4], mask[1:]))
    return aes_gcm.aes_gcm_decrypt(key, iv, datagram[pn_offset + 4:], header)


def test_prepare_gives_windows_every_target_and_a_sealed_initial_per_quic_target():
    prepared = windows_probe.prepare(params())
    assert prepared['timeout_ms'] == 2500 and prepared['ip_version'] == 'auto'
    targets = prepared['targets']
    assert [t['id'] for t in targets] == list(range(len(targets)))
    quic = [t for t in targets if t['protocol'] == 'udp']
    # ip_version=auto: both families are prepared; the host drops those it has no route for.
    assert sorted(t['address'] for t in quic) == ['198.51.100.11', '198.51.100.12', '198.51.100.21', '2001:db8:e::11']
    dcids = [a['dcid'] for t in quic for a in t['attempts']]
    assert len(set(dcids)) == len(dcids) == 4 * len(quic), 'every attempt needs its own connection ID'
    for target in quic:
        assert [a['kind'] for a in target['attempts']] == ['cloudflared', 'precheck', 'single', 'small']
        sizes = [[len(base64.b64decode(d)) for d in a['datagrams']] for a in target['attempts']]
        size = quic_initial.INITIAL_PAYLOAD[target['family']]
        assert sizes == [[size, size], [1280, 1280], [size], [1200]]
        precheck = target['attempts'][1]
        payload = decrypt_client_initial(base64.b64decode(precheck['datagrams'][0]), bytes.fromhex(precheck['dcid']))
        assert b'probe.cftunnel.com' in payload  # the pre-check's SNI
        first = target['attempts'][0]
        payload = decrypt_client_initial(base64.b64decode(first['datagrams'][0]), bytes.fromhex(first['dcid']))
        assert b'quic.cftunnel.com' in payload and b'argotunnel' in payload
    assert prepared['first_attempts'] == 2
    assert prepared['size_check_after'] == 2.0 / 3
    assert {'name': '_v2-origintunneld._tcp.argotunnel.com', 'type': 'SRV'} in prepared['dns_questions']
    assert {'name': 'api.cloudflare.com', 'type': 'AAAA'} in prepared['dns_questions']


def test_prepare_with_one_family_and_no_dns():
    prepared = windows_probe.prepare(params(ip_version='6', checks=['quic', 'tcp']))
    assert {t['family'] for t in prepared['targets']} == {'ipv6'}
    assert prepared['dns_questions'] == []


def fixed_attempts(server_name, family):
    # The RFC 9001 connection: the server's A.3 Initial then answers any of these attempts.
    return dict((kind, ([b'\xc0' + bytes(1231)] * count, CLIENT_DCID, b'')) for kind, count in
                (('cloudflared', 2), ('precheck', 2), ('single', 1), ('small', 1)))


def test_report_reads_a_real_server_initial_and_classifies_the_rest():
    prepared = windows_probe.prepare(params(checks=['quic', 'tls', 'dns'], purposes=['tunnel'], ip_version='4'),
                                     build_attempts=fixed_attempts)
    quic = [t for t in prepared['targets'] if t['protocol'] == 'udp']
    tls = [t for t in prepared['targets'] if t['protocol'] == 'tcp']
    module_result = {
        'families': ['ipv4'],
        'results': [
            {'id': quic[0]['id'], 'check': 'quic', 'ok': True, 'latency_ms': 12,
             'answers': {'cloudflared': [base64.b64encode(A3_PROTECTED).decode()]}},
            {'id': quic[1]['id'], 'check': 'quic', 'ok': True, 'answers': {'cloudflared': [base64.b64encode(b'\x40junk').decode()]}},
            {'id': quic[2]['id'], 'check': 'quic', 'ok': False, 'error_kind': 'timeout', 'message': 'no answer',
             'answers': {'cloudflared': [], 'single': [], 'small': []}},
        ] + [{'id': t['id'], 'check': 'tls', 'ok': False, 'error_kind': 'refused', 'message': 'refused'} for t in tls],
        'dns': {'nameservers': ['198.51.100.53'], 'answers': [
            {'name': '_v2-origintunneld._tcp.argotunnel.com', 'type': 'SRV', 'ok': True,
             'answers': [[1, 1, 7844, 'region1.v2.argotunnel.com'], [1, 1, 7844, 'region2.v2.argotunnel.com']]},
            {'name': 'region1.v2.argotunnel.com', 'type': 'A', 'ok': True, 'answers': ['198.51.100.11', '198.51.100.12']},
            {'name': 'region2.v2.argotunnel.com', 'type': 'A', 'ok': False, 'answers': [], 'error_kind': 'servfail',
             'message': 'SERVFAIL'},
        ]},
    }
    output = windows_probe.report(params(require=['quic']), prepared, module_result)
    rows = {(r['address'], r['check']): r for r in output['results']}
    assert rows[(quic[0]['address'], 'quic')]['ok'] is True
    assert 'handshake answered' in rows[(quic[0]['address'], 'quic')]['message']
    assert rows[(quic[1]['address'], 'quic')]['error_kind'] == 'quic_not_ours'
    assert rows[(quic[2]['address'], 'quic')]['error_kind'] == 'timeout'
    assert rows[(quic[0]['address'], 'quic')]['initial_size'] == 1232
    assert output['recommended_protocol'] == 'quic'
    assert output['unmet_requirements'] == []
    assert [f['kind'] for f in output['dns']['findings']] == ['unresolvable']
    failed = windows_probe.report(params(require=['http2']), prepared, module_result)
    assert failed['unmet_requirements'][0].startswith('http2: tls tcp/7844 refused')


def test_report_names_a_size_loss_when_only_the_small_attempt_is_answered():
    prepared = windows_probe.prepare(params(checks=['quic'], purposes=['tunnel'], ip_version='4'),
                                     build_attempts=fixed_attempts)
    quic = prepared['targets']
    answered = [base64.b64encode(A3_PROTECTED).decode()]
    module_result = {'families': ['ipv4'], 'results': [
        {'id': quic[0]['id'], 'check': 'quic', 'ok': False, 'error_kind': 'timeout', 'message': 'no answer',
         'answers': {'cloudflared': [], 'single': [], 'small': answered}},
        {'id': quic[1]['id'], 'check': 'quic', 'ok': False, 'error_kind': 'timeout', 'message': 'no answer',
         'answers': {'cloudflared': [], 'single': answered, 'small': answered}},
        {'id': quic[2]['id'], 'check': 'quic', 'ok': False, 'error_kind': 'refused', 'message': 'UDP 7844: refused',
         'answers': {'cloudflared': []}},
    ]}
    output = windows_probe.report(params(checks=['quic'], require=[]), prepared, module_result)
    rows = list(output['results'])
    assert [r['error_kind'] for r in rows] == ['quic_size', 'quic_multi_initial', 'refused']
    assert "cloudflared's 1232-byte UDP datagrams" in rows[0]['message']
    assert output['recommended_protocol'] == 'none'


def test_prepare_sends_windows_cloudflareds_roots_and_its_tcp_hello():
    import hashlib
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import edge_trust, tls_hello
    prepared = windows_probe.prepare(params(checks=['tls', 'https', 'quic']))
    assert [hashlib.sha256(base64.b64decode(der)).hexdigest() for der in prepared['tunnel_roots']] == [
        fingerprint for _name, fingerprint, _pem in edge_trust.CLOUDFLARE_ROOTS]
    tls = [t for t in prepared['targets'] if 'tls' in t['checks']]
    assert tls and all(t['purpose'] == 'tunnel' for t in tls)
    for target in tls:
        hello = base64.b64decode(target['hello'])
        assert hello[:1] == b'\x16' and len(hello) == len(tls_hello.client_hello('h2.cftunnel.com'))
        assert b'h2.cftunnel.com' in hello
    assert not any('hello' in t for t in prepared['targets'] if 'tls' not in t['checks'])
    # The tests' seam: other roots instead of Cloudflare's (a lab CA), or none.
    assert windows_probe.prepare(params(checks=['tls']), tunnel_roots='')['tunnel_roots'] == []


HRR = bytes.fromhex('160303005802000054' + '0303') + bytes.fromhex(
    'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c')


def test_report_reads_the_answer_to_cloudflareds_tcp_hello():
    prepared = windows_probe.prepare(params(checks=['tls'], purposes=['tunnel'], ip_version='4'))
    tls = prepared['targets']
    hellos = [
        {'outcome': 'answered', 'size': 1443, 'answer': base64.b64encode(HRR).decode()},
        {'outcome': 'silent', 'size': 1443, 'answer': ''},
        {'outcome': 'answered', 'size': 1443, 'answer': base64.b64encode(b'\x15\x03\x03\x00\x02\x02\x28').decode()},
    ]
    module_result = {'families': ['ipv4'], 'results': [
        {'id': t['id'], 'check': 'tls', 'ok': True, 'message': 'Tls13 with SNI h2.cftunnel.com', 'hello': hello}
        for t, hello in zip(tls, hellos)]}
    output = windows_probe.report(params(checks=['tls'], require=['http2']), prepared, module_result)
    rows = output['results']
    assert [(r['ok'], r['error_kind']) for r in rows] == [(True, None), (False, 'tls_size'), (False, 'tls')]
    assert rows[0]['message'].endswith("cloudflared's 1443-byte post-quantum ClientHello answered (HelloRetryRequest)")
    assert "cloudflared's 1443-byte post-quantum ClientHello got no answer" in rows[1]['message']
    assert 'TLS handshake_failure' in rows[2]['message']
    assert {r['hello_size'] for r in rows} == {1443}
    assert output['unmet_requirements'] == []  # one address answered both hellos: http2 works


def test_report_says_which_quic_sizes_passed():
    prepared = windows_probe.prepare(params(checks=['quic'], purposes=['tunnel'], ip_version='4'),
                                     build_attempts=fixed_attempts)
    quic = prepared['targets']
    answered = [base64.b64encode(A3_PROTECTED).decode()]
    module_result = {'families': ['ipv4'], 'results': [
        {'id': quic[0]['id'], 'check': 'quic', 'ok': True, 'answers': {'cloudflared': answered, 'precheck': []}},
        {'id': quic[1]['id'], 'check': 'quic', 'ok': True, 'answers': {'cloudflared': answered, 'precheck': answered}},
        {'id': quic[2]['id'], 'check': 'quic', 'ok': False, 'error_kind': 'timeout', 'message': 'no answer',
         'answers': {'cloudflared': [], 'precheck': answered, 'single': [], 'small': []}},
    ]}
    rows = windows_probe.report(params(checks=['quic'], require=[]), prepared, module_result)['results']
    assert [(r['ok'], r['error_kind']) for r in rows] == [(True, None), (True, None), (False, 'quic_size')]
    assert "the pre-check's 1280-byte Initials got no answer" in rows[0]['message']
    assert 'pre-check' not in rows[1]['message']
    assert "the pre-check's 1280-byte ones were answered" in rows[2]['message']
    assert [(f['flight'], f['answered']) for f in rows[0]['flights']] == [('cloudflared', True), ('precheck', False)]
