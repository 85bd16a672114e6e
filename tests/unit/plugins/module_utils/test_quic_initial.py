# -*- coding: utf-8 -*-
"""The QUIC Initial builder against RFC 9001, Appendix A, on both AES paths."""

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import aes_gcm, quic_initial

CLIENT_DCID = bytes.fromhex('8394c8f03e515708')

# RFC 9001, A.2: the client Initial's header (packet number 2, 4 bytes) and CRYPTO frame, padded.
A2_HEADER = bytes.fromhex('c300000001088394c8f03e5157080000449e00000002')
A2_PAYLOAD = bytes.fromhex(
    '060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868'
    '04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578'
    '616d706c652e636f6dff01000100000a00080006001d00170018001000070005'
    '04616c706e000500050100000000003300260024001d00209370b2c9caa47fba'
    'baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400'
    '0d0010000e0403050306030203080408050806002d00020101001c0002400100'
    '3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000'
    '75300901100f088394c8f03e51570806048000ffff') + bytes(917)
A2_PROTECTED_START = bytes.fromhex('c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11')
A2_PROTECTED_END = bytes.fromhex('e221af44860018ab0856972e194cd934')

# RFC 9001, A.3: the server's Initial (ACK + ServerHello), protected.
A3_PROTECTED = bytes.fromhex(
    'cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a'
    '5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3'
    'dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84'
    '022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4'
    '2158407dd074ee')


@pytest.fixture(params=['cryptography', 'pure-python'])
def aes_path(request, monkeypatch):
    if request.param == 'pure-python':
        monkeypatch.setattr(aes_gcm, 'AESGCM', None)
    elif aes_gcm.AESGCM is None:
        pytest.fail('cryptography is in requirements-dev.txt: its AES path must be tested too')
    return request.param


def test_initial_secrets_rfc9001_a1():
    assert [k.hex() for k in quic_initial.initial_keys(CLIENT_DCID)] == [
        '1f369613dd76d5467730efcbe3b1a22d', 'fa044b2f42a3fd3b46fb255c', '9f50449e04a0e810283a1e9933adedd2']
    assert [k.hex() for k in quic_initial.initial_keys(CLIENT_DCID, b'server in')] == [
        'cf3a5331653c364c88f0f379b6067e37', '0ac1493ca1905853b0bba03e', 'c206b8d9b9f0f37644430b490eeaa314']


def test_aes_fips197_vector(aes_path):
    key = bytes(range(16))
    block = bytes.fromhex('00112233445566778899aabbccddeeff')
    assert aes_gcm.aes_ecb_block(key, block).hex() == '69c4e0d86a7b0430d8cdb78070b4c55a'


def test_protected_client_initial_rfc9001_a2(aes_path):
    packet = quic_initial.protect(A2_HEADER, A2_PAYLOAD, 2, quic_initial.initial_keys(CLIENT_DCID), 4)
    assert len(packet) == 1200
    assert packet.startswith(A2_PROTECTED_START)
    assert packet.endswith(A2_PROTECTED_END)


def test_server_initial_rfc9001_a3_is_read_as_a_server_hello(aes_path):
    answer = quic_initial.read_answer(A3_PROTECTED, CLIENT_DCID, b'')
    assert answer == {'packet': 'initial', 'server_hello': True, 'close': None, 'ack_only': False}


def test_a_tampered_server_initial_is_still_an_answer_but_not_a_hello(aes_path):
    tampered = A3_PROTECTED[:-1] + bytes([A3_PROTECTED[-1] ^ 1])
    assert quic_initial.read_answer(tampered, CLIENT_DCID, b'') == {
        'packet': 'initial', 'server_hello': False, 'close': None, 'ack_only': False}


def test_gcm_round_trip_and_tag_check(aes_path):
    sealed = aes_gcm.aes_gcm_encrypt(bytes(16), bytes(12), b'tunnelwall', b'aad')
    assert aes_gcm.aes_gcm_decrypt(bytes(16), bytes(12), sealed, b'aad') == b'tunnelwall'
    with pytest.raises(aes_gcm.AuthenticationError):
        aes_gcm.aes_gcm_decrypt(bytes(16), bytes(12), sealed, b'other aad')


def gmul_reference(x, y):
    """GF(2^128) multiplication bit by bit, as NIST SP 800-38D Algorithm 1 states it."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ (0xE1 << 120) if v & 1 else v >> 1
    return z


def test_ghash_four_bit_tables_match_the_reference_multiplication():
    for seed in range(200):
        x = int.from_bytes(hashlib.sha256(b'x%d' % seed).digest()[:16], 'big')
        y = int.from_bytes(hashlib.sha256(b'y%d' % seed).digest()[:16], 'big')
        assert aes_gcm._gmul(x, aes_gcm._ghash_table(y)) == gmul_reference(x, y)


def test_both_aes_paths_agree(monkeypatch):
    key, nonce, data = bytes(range(16)), bytes(range(12)), bytes(range(200)) * 3
    fast = aes_gcm.aes_gcm_encrypt(key, nonce, data, b'header')
    monkeypatch.setattr(aes_gcm, 'AESGCM', None)
    assert aes_gcm.aes_gcm_encrypt(key, nonce, data, b'header') == fast


def test_initial_datagram_is_1200_bytes_and_decrypts_to_our_client_hello(aes_path):
    datagram, dcid, scid = quic_initial.initial_datagram('quic.cftunnel.com')
    assert len(datagram) == quic_initial.MIN_INITIAL_DATAGRAM
    assert datagram[0] & 0xF0 == 0xC0 and datagram[1:5] == b'\x00\x00\x00\x01'
    assert datagram[6:14] == dcid and datagram[15:23] == scid
    # Read it back with the client keys, as a server would.
    key, iv, hp = quic_initial.initial_keys(dcid)
    pn_offset = 23 + 1 + 2
    mask = aes_gcm.aes_ecb_block(hp, datagram[pn_offset + 4:pn_offset + 20])
    first = datagram[0] ^ (mask[0] & 0x0F)
    assert first & 0x03 == 3  # 4-byte packet number
    header = bytes([first]) + datagram[1:pn_offset] + bytes(b ^ m for b, m in zip(datagram[pn_offset:pn_offset + 4], mask[1:]))
    payload = aes_gcm.aes_gcm_decrypt(key, iv, datagram[pn_offset + 4:], header)
    assert payload[0] == 0x06 and b'quic.cftunnel.com' in payload and b'argotunnel' in payload
    assert payload.rstrip(b'\0')[-1] != 0  # padded with PADDING frames only


def test_connection_close_is_described_as_a_tls_alert():
    assert quic_initial.describe_close((0x178, 'No common ALPN protocols')) == (
        'closed by the server: TLS no_application_protocol (No common ALPN protocols)')
    assert quic_initial.describe_close((0x0a, '')) == 'closed by the server: error 0xa'


@pytest.mark.parametrize('value', [0, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30, 2 ** 62 - 1])
def test_varint_round_trip(value):
    assert quic_initial.read_varint(quic_initial.varint(value), 0) == (value, len(quic_initial.varint(value)))


def decrypt_initial(datagram, dcid, scid_length=8):
    """The plaintext payload of one of our client Initials, read back with the client keys as a server would."""
    key, iv, hp = quic_initial.initial_keys(dcid)
    pn_offset = 6 + len(dcid) + 1 + scid_length + 1 + 2
    mask = aes_gcm.aes_ecb_block(hp, datagram[pn_offset + 4:pn_offset + 20])
    first = datagram[0] ^ (mask[0] & 0x0F)
    assert first & 0x03 == 3  # 4-byte packet number
    number = bytes(b ^ m for b, m in zip(datagram[pn_offset:pn_offset + 4], mask[1:]))
    header = bytes([first]) + datagram[1:pn_offset] + number
    nonce = (int.from_bytes(iv, 'big') ^ int.from_bytes(number, 'big')).to_bytes(12, 'big')
    return int.from_bytes(number, 'big'), aes_gcm.aes_gcm_decrypt(key, nonce, datagram[pn_offset + 4:], header)


def test_cloudflareds_initial_sizes_are_the_numbers_in_its_source():
    # supervisor/tunnel.go (serveQUIC): InitialPacketSize 1252, or 1232 when the edge address is IPv4.
    assert quic_initial.INITIAL_PAYLOAD == {'ipv4': 1232, 'ipv6': 1252}
    # crypto/curves.go: X25519MLKEM768 (0x11ec) first; its client share is 1184 + 32 bytes.
    assert (quic_initial.X25519MLKEM768, quic_initial.X25519MLKEM768_SHARE) == (0x11ec, 1216)
    assert quic_initial.SUPPORTED_GROUPS[:2] == (0x11ec, 0xfe32)


def key_shares(hello):
    """{group: share length} of a ClientHello, read with nothing but its wire format."""
    offset = 4 + 2 + 32
    offset += 1 + hello[offset]                                     # session id
    offset += 2 + int.from_bytes(hello[offset:offset + 2], 'big')   # cipher suites
    offset += 1 + hello[offset]                                     # compression methods
    end = offset + 2 + int.from_bytes(hello[offset:offset + 2], 'big')
    offset += 2
    while offset < end:
        kind, length = int.from_bytes(hello[offset:offset + 2], 'big'), int.from_bytes(hello[offset + 2:offset + 4], 'big')
        body = hello[offset + 4:offset + 4 + length]
        offset += 4 + length
        if kind == 0x0033:
            shares, at = [], 2
            while at < len(body):
                group, size = int.from_bytes(body[at:at + 2], 'big'), int.from_bytes(body[at + 2:at + 4], 'big')
                shares.append((group, size))
                at += 4 + size
            return shares
    return None


@pytest.mark.parametrize('family', ['ipv4', 'ipv6'])
def test_cloudflared_flight_is_a_post_quantum_hello_over_initials_of_its_size(family, aes_path):
    datagrams, dcid, scid = quic_initial.cloudflared_datagrams('quic.cftunnel.com', family)
    assert [len(d) for d in datagrams] == [quic_initial.INITIAL_PAYLOAD[family]] * 2
    hello, numbers = b'', []
    for datagram in datagrams:
        assert datagram[6:14] == dcid and datagram[15:23] == scid
        number, payload = decrypt_initial(datagram, dcid)
        numbers.append(number)
        assert payload[0] == 0x06
        offset, at = quic_initial.read_varint(payload, 1)
        length, at = quic_initial.read_varint(payload, at)
        assert offset == len(hello)  # CRYPTO frames continue where the last one ended
        hello += payload[at:at + length]
        assert not payload[at + length:].strip(b'\0')  # then PADDING only
    assert numbers == [0, 1]
    assert hello[0] == 1 and int.from_bytes(hello[1:4], 'big') == len(hello) - 4
    assert key_shares(hello) == [(0x11ec, 1216), (0x001d, 32)]
    # The ML-KEM-768 encapsulation key is well formed: every 12-bit coefficient below q.
    share = hello[hello.index(bytes.fromhex('11ec04c0')) + 4:][:1184]
    triples = [int.from_bytes(share[i:i + 3], 'little') for i in range(0, 1152, 3)]
    coefficients = [c for triple in triples for c in (triple & 0xFFF, triple >> 12)]
    assert len(coefficients) == 768 and max(coefficients) < quic_initial.MLKEM_Q


def test_initials_below_1200_bytes_are_refused():
    with pytest.raises(ValueError, match='size=1199'):
        quic_initial.initial_datagrams('quic.cftunnel.com', size=1199)
