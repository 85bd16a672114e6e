# -*- coding: utf-8 -*-
"""The probe's TLS check on the tunnel port against real TLS servers on loopback: cloudflared's trust, its hello.

Trust: cloudflared trusts the system store plus three Cloudflare roots on
7844, or its --cacert file alone. A lab CA stands in for those roots through
the same seam the module uses for them (edge_trust.tunnel_context's
``extra_roots``), and for the system store through OpenSSL's own
SSL_CERT_FILE.

Hello: the check also sends cloudflared's ~1.4 KB post-quantum ClientHello
on a second connection; a path that loses it while a short hello passes is
``tls_size``.
"""

from __future__ import annotations

import time

import pytest
import trustme

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import edge_trust, reachability, tls_hello
from tests.support.tls_server import HelloSizeRelay, TlsServer

# Handshakes with servers of our own, no Ansible: `make test` runs this once, in the latest venv (marker `once`).
pytestmark = pytest.mark.once

FAMILIES = ('ipv4', 'ipv6')


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    """Two CAs: ``edge`` signs the server's chain (through an intermediate), ``other`` signs nothing we meet."""
    directory = tmp_path_factory.mktemp('pki')
    edge, other = trustme.CA(organization_name='stand-in for a Cloudflare root'), trustme.CA()
    leaf = edge.create_child_ca().issue_cert('h2.cftunnel.com', 'api.cloudflare.com')
    paths = {name: str(directory / (name + '.pem')) for name in ('edge', 'other', 'chain', 'key')}
    edge.cert_pem.write_to_path(paths['edge'])
    other.cert_pem.write_to_path(paths['other'])
    leaf.private_key_pem.write_to_path(paths['key'])
    with open(paths['chain'], 'wb') as handle:
        for blob in leaf.cert_chain_pems:
            handle.write(blob.bytes())
    paths['edge_pem'] = edge.cert_pem.bytes().decode('ascii')
    return paths


@pytest.fixture(scope='module')
def server(pki):
    tls = TlsServer(pki['chain'], pki['key']).start()
    yield tls
    tls.stop()


def target(address, family, check='tls', purpose='tunnel', server_name='h2.cftunnel.com'):
    return {'hostname': 'region1.v2.argotunnel.com', 'purpose': purpose, 'address': address[0], 'family': family,
            'port': address[1], 'protocol': 'tcp', 'checks': ['tcp', check], 'server_name': server_name}


def tls_row(rows, check='tls'):
    return next(r for r in rows if r['check'] == check)


def test_the_three_roots_are_cloudflareds_and_in_the_default_tunnel_context():
    context = edge_trust.tunnel_context(True, None)
    store = {dict(x[0] for x in cert['subject']).get('organizationalUnitName') for cert in context.get_ca_certs()}
    assert {'CloudFlare Origin SSL ECC Certificate Authority', 'CloudFlare Origin SSL Certificate Authority',
            'Origin Pull'} <= store
    plain = edge_trust.https_context(True, None)
    assert len(context.get_ca_certs()) == len(plain.get_ca_certs()) + 3  # the system store, plus the three


@pytest.mark.parametrize('family', FAMILIES)
def test_a_chain_the_system_store_rejects_passes_with_the_added_roots(server, pki, family):
    alone = reachability.probe_stream(target(server.ports[family], family), 2.0, edge_trust.contexts(True, None, ''))
    assert tls_row(alone)['error_kind'] == 'tls_certificate', alone
    added = reachability.probe_stream(target(server.ports[family], family), 2.0,
                                      edge_trust.contexts(True, None, pki['edge_pem']))
    assert tls_row(added)['ok'], added


def test_the_added_roots_are_for_the_tunnel_port_only(server, pki):
    rows = reachability.probe_stream(target(server.ports['ipv4'], 'ipv4', 'https', 'api', 'api.cloudflare.com'), 2.0,
                                     edge_trust.contexts(True, None, pki['edge_pem']))
    assert tls_row(rows, 'https')['error_kind'] == 'tls_certificate'


def test_ca_path_replaces_the_store_and_the_roots_as_cacert_does(server, pki):
    # The reverse: the roots would accept this chain, but --cacert (ca_path) drops them with the system store.
    rows = reachability.probe_stream(target(server.ports['ipv4'], 'ipv4'), 2.0,
                                     edge_trust.contexts(True, pki['other'], pki['edge_pem']))
    assert tls_row(rows)['error_kind'] == 'tls_certificate', rows
    rows = reachability.probe_stream(target(server.ports['ipv4'], 'ipv4'), 2.0, edge_trust.contexts(True, pki['edge'], ''))
    assert tls_row(rows)['ok'], rows


def test_the_system_store_still_counts_beside_the_roots(server, pki, monkeypatch):
    # OpenSSL reads SSL_CERT_FILE when the default store is loaded: here the store is the edge's CA.
    monkeypatch.setenv('SSL_CERT_FILE', pki['edge'])
    rows = reachability.probe_stream(target(server.ports['ipv4'], 'ipv4'), 2.0, edge_trust.contexts(True, None))
    assert tls_row(rows)['ok'], rows
    monkeypatch.setenv('SSL_CERT_FILE', pki['other'])
    rows = reachability.probe_stream(target(server.ports['ipv4'], 'ipv4'), 2.0, edge_trust.contexts(True, None))
    assert tls_row(rows)['error_kind'] == 'tls_certificate', rows


def test_cloudflareds_hello_is_over_a_kilobyte_and_offers_its_groups():
    hello = tls_hello.client_hello('h2.cftunnel.com')
    assert 1400 < len(hello) < 1500
    assert hello[:3] == b'\x16\x03\x01' and int.from_bytes(hello[3:5], 'big') == len(hello) - 5
    groups = b'\x00\x0a\x00\x08\x00\x06\x11\xec\xfe\x32\x00\x17'  # X25519MLKEM768, P256Kyber768Draft00, P-256
    assert groups in hello
    assert b'\x00\x33\x04\xc6\x04\xc4\x11\xec\x04\xc0' in hello  # key_share: one X25519MLKEM768 share of 1216 bytes
    assert b'h2.cftunnel.com' in hello


@pytest.mark.parametrize('family', FAMILIES)
def test_the_hello_gets_a_hello_retry_request_from_a_server_without_ml_kem(server, pki, family):
    rows = reachability.probe_stream(target(server.ports[family], family), 2.0, edge_trust.contexts(True, pki['edge']))
    row = tls_row(rows)
    assert row['ok'], row
    assert row['hello_size'] == len(tls_hello.client_hello('h2.cftunnel.com'))
    assert ("cloudflared's %d-byte post-quantum ClientHello answered (HelloRetryRequest)" % row['hello_size']) in row['message']
    assert row['latency_ms'] < 1000


@pytest.mark.parametrize('family', FAMILIES)
def test_a_path_losing_the_large_hello_is_tls_size_naming_it(server, pki, family):
    relay = HelloSizeRelay(server.ports[family], max_record=1000).start()
    try:
        started = time.time()
        rows = reachability.probe_stream(target(relay.address, family), 1.5, edge_trust.contexts(True, pki['edge']))
    finally:
        relay.stop()
    assert rows[0] == dict(rows[0], check='tcp', ok=True)
    row = tls_row(rows)
    size = row['hello_size']
    assert (row['ok'], row['error_kind']) == (False, 'tls_size'), row
    assert ("cloudflared's %d-byte post-quantum ClientHello got no answer" % size) in row['message']
    assert 'while a short ClientHello was answered' in row['message']
    assert relay.swallowed == [size]  # Python's own hello went through; only cloudflared's was lost
    assert time.time() - started < 2.0  # one timeout


def test_a_closed_port_is_refused_not_tls_size(server):
    import socket
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    rows = reachability.probe_stream(target(('127.0.0.1', port), 'ipv4'), 1.0, edge_trust.contexts(True, None))
    assert {(r['check'], r['error_kind']) for r in rows} == {('tcp', 'refused'), ('tls', 'refused')}


@pytest.mark.parametrize('outcome, detail, kind, words', [
    ('answered', 'server_hello', None, 'answered (ServerHello)'),
    ('alert', 'handshake_failure', 'tls', 'refused cloudflared\'s 1443-byte ClientHello: TLS handshake_failure'),
    ('closed', None, 'tls', 'the connection ended after cloudflared\'s 1443-byte ClientHello'),
    ('silent', None, 'tls_size', 'packet size / path MTU'),
])
def test_each_answer_to_the_hello_reads_as_its_kind(outcome, detail, kind, words):
    ok, error_kind, message = reachability.interpret_cloudflared_hello(outcome, detail, 1443, {'port': 7844}, 2.0)
    assert (ok, error_kind) == (kind is None, kind)
    assert words in message
