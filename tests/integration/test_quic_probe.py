# -*- coding: utf-8 -*-
"""The probe's QUIC check against a real QUIC server (aioquic) on loopback, through a relay that loses on purpose.

cloudflared's first flight (a post-quantum ClientHello over Initials of its
size) must be answered by a server without ML-KEM, and fail - with the
cause named - where only smaller or single datagrams get through.
"""

from __future__ import annotations

import socket
import time

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import quic_initial, reachability
from tests.support.quic_server import LossyRelay, QuicServer

# Datagrams and a QUIC server, no Ansible: `make test` runs this once, in the latest venv (marker `once`, see the
# Makefile).
pytestmark = pytest.mark.once

FAMILIES = ('ipv4', 'ipv6')


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    quic = QuicServer(str(tmp_path_factory.mktemp('quic'))).start()
    yield quic
    quic.stop()


def target(address, family):
    return {'hostname': 'region1.v2.argotunnel.com', 'purpose': 'tunnel', 'address': address[0], 'family': family,
            'port': address[1], 'protocol': 'udp', 'checks': ['quic'], 'server_name': 'quic.cftunnel.com'}


@pytest.fixture
def relay(server):
    relays = []

    def make(family, **loss):
        relays.append(LossyRelay(server.ports[family], **loss).start())
        return relays[-1]
    yield make
    for one in relays:
        one.stop()


@pytest.mark.parametrize('family', FAMILIES)
def test_the_server_completes_the_handshake_with_cloudflareds_flight(server, family):
    before = len(server.handshakes)
    row = reachability.probe_quic(target(server.ports[family], family), 2.0)
    assert row['ok'], row
    assert row['message'] == 'QUIC handshake answered (initial, ALPN accepted)'
    assert (row['initial_size'], row['initials']) == (quic_initial.INITIAL_PAYLOAD[family], 2)
    assert row['latency_ms'] < 1000  # answered at once: no size check was needed
    # aioquic has no ML-KEM: it chose the X25519 share, and (our client never finishing) logged no handshake.
    assert len(server.handshakes) == before


@pytest.mark.parametrize('family', FAMILIES)
def test_datagrams_just_below_cloudflareds_size_fail_with_the_size_named(relay, family):
    size = quic_initial.INITIAL_PAYLOAD[family]
    path = relay(family, max_size=size - 1)
    started = time.time()
    row = reachability.probe_quic(target(path.address, family), 1.5)
    assert not row['ok']
    assert row['error_kind'] == 'quic_size'
    assert 'packet size / path MTU' in row['message'] and ("cloudflared's %d-byte UDP datagrams" % size) in row['message']
    assert set(path.dropped) == {size, quic_initial.PRECHECK_INITIAL_PAYLOAD}  # the pre-check's flight too
    assert time.time() - started < 2.0  # still one timeout


@pytest.mark.parametrize('family', FAMILIES)
def test_datagrams_above_cloudflareds_size_pass(relay, family):
    path = relay(family, max_size=quic_initial.INITIAL_PAYLOAD[family])
    row = reachability.probe_quic(target(path.address, family), 1.5)
    assert row['ok'], row
    # Only the pre-check's 1280-byte Initials are larger: the tunnel works, and the row says the pre-check fails.
    assert set(path.dropped) == {quic_initial.PRECHECK_INITIAL_PAYLOAD}
    assert "the pre-check's 1280-byte Initials got no answer" in row['message']
    assert [(f['flight'], f['size'], f['answered']) for f in row['flights']] == [
        ('cloudflared', quic_initial.INITIAL_PAYLOAD[family], True), ('precheck', 1280, False)]


@pytest.mark.parametrize('family', FAMILIES)
def test_the_precheck_size_passes_with_the_tunnels(relay, family):
    path = relay(family, max_size=quic_initial.PRECHECK_INITIAL_PAYLOAD)
    row = reachability.probe_quic(target(path.address, family), 1.5)
    assert row['ok'] and row['message'] == 'QUIC handshake answered (initial, ALPN accepted)', row
    assert path.dropped == []
    assert [(f['flight'], f['size'], f['initials'], f['answered']) for f in row['flights']] == [
        ('cloudflared', quic_initial.INITIAL_PAYLOAD[family], 2, True), ('precheck', 1280, 2, True)]
    assert row['latency_ms'] < 1000  # both answered at once: no waiting for the deadline


@pytest.mark.parametrize('family', FAMILIES)
def test_only_the_precheck_size_passing_fails_quic_naming_both_sizes(relay, family):
    size = quic_initial.INITIAL_PAYLOAD[family]
    path = relay(family, only_size=quic_initial.PRECHECK_INITIAL_PAYLOAD)
    row = reachability.probe_quic(target(path.address, family), 1.5)
    assert (row['ok'], row['error_kind']) == (False, 'quic_size')
    assert ("cloudflared's %d-byte UDP datagrams" % size) in row['message']
    assert "the pre-check's 1280-byte ones were answered" in row['message']
    assert {f['flight']: f['answered'] for f in row['flights']} == {
        'cloudflared': False, 'precheck': True, 'single': False, 'small': False}


@pytest.mark.parametrize('family', FAMILIES)
def test_a_path_passing_one_initial_per_flow_fails_as_multi_initial(relay, family):
    path = relay(family, first_initial_only=True)
    row = reachability.probe_quic(target(path.address, family), 1.5)
    assert not row['ok']
    assert row['error_kind'] == 'quic_multi_initial'
    assert 'drops the second Initial' in row['message']
    # The second Initial of cloudflared's flight and of the pre-check's.
    assert sorted(path.dropped) == sorted([quic_initial.INITIAL_PAYLOAD[family], quic_initial.PRECHECK_INITIAL_PAYLOAD])


def test_a_silent_port_is_still_a_plain_timeout(relay):
    path = relay('ipv4', max_size=100)  # nothing QUIC gets through
    row = reachability.probe_quic(target(path.address, 'ipv4'), 1.0)
    assert (row['ok'], row['error_kind']) == (False, 'timeout')
    assert row['message'] == 'UDP %d: no QUIC answer within 1s (dropped?)' % path.address[1]


def test_many_probes_at_once_descriptors_above_1024_work(server):
    # edge_probe runs hundreds of probes at once, each with up to three sockets: select() would fail above 1024.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 2048), hard), hard))
    held = []
    try:
        while not held or held[-1].fileno() < 1100:
            held.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        row = reachability.probe_quic(target(server.ports['ipv4'], 'ipv4'), 2.0)
        assert row['ok'], row
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
