# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A QUIC version 1 client Initial, built with the standard library only.

The probe proves that UDP 7844 reaches a QUIC server by sending what
cloudflared sends first: client Initial packets (RFC 9000, 17.2.2) carrying
a TLS 1.3 ClientHello with the server name and ALPN ``argotunnel``,
protected as RFC 9001 section 5 says (HKDF-derived keys, AES-128-GCM,
header protection). Since cloudflared offers a post-quantum key share its
ClientHello no longer fits one Initial: it is split over CRYPTO frames of
several Initials, each padded to the datagram size cloudflared gives quic-go
for the edge address's family (INITIAL_PAYLOAD). A path that drops those
larger or multiple datagrams must fail the probe as it fails cloudflared.
Any QUIC long-header packet that comes back addressed to our connection ID
proves a QUIC server answered; the server's Initial is decrypted to tell a
ServerHello from a CONNECTION_CLOSE or a bare ACK.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import os
import struct

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.aes_gcm import (
    AuthenticationError, aes_ecb_block, aes_gcm_decrypt, aes_gcm_encrypt)

QUIC_V1 = 0x00000001
# RFC 9001, 5.2.
INITIAL_SALT_V1 = bytes.fromhex('38762cf7f55934b34d179ae6a4c80cadccbb7f0a')
MIN_INITIAL_DATAGRAM = 1200
AEAD_TAG = 16

# UDP payload of every client Initial cloudflared sends, by the edge address's family. cloudflared's
# supervisor/tunnel.go (serveQUIC) sets quic.Config.InitialPacketSize to 1252, and to 1232 when the edge
# address is IPv4 ("quic-go 0.44 increases the initial packet size to 1280 by default. That breaks anyone
# running tunnel through WARP because WARP MTU is 1280"). The vendored quic-go pads every datagram that
# carries a client Initial to that size (packet_packer.go: the client pads Initials to the max packet size).
INITIAL_PAYLOAD = {'ipv4': 1232, 'ipv6': 1252}
# The start-up pre-check (cloudflared 2026.5+, prechecks/probes.go, probeQUIC) dials with an empty quic.Config, so
# quic-go's default Initial size applies to both families: 1280 bytes of UDP payload. It sends the probe SNI
# probe.cftunnel.com (connection/protocol.go, ProbeTLSSettings) with the same post-quantum curves.
PRECHECK_INITIAL_PAYLOAD = 1280
PRECHECK_SERVER_NAME = 'probe.cftunnel.com'
# TLS named groups (IANA). cloudflared's crypto/curves.go, post-quantum "prefer" mode (the default):
# X25519MLKEM768 first, then P256Kyber768Draft00 (0xfe32), then P-256. Go's crypto/tls sends a key share
# for the first group only; we also send an X25519 share (and list X25519) so that a server without ML-KEM,
# such as the lab's aioquic, still answers at once instead of asking for a HelloRetryRequest.
X25519MLKEM768 = 0x11ec
P256_KYBER768_DRAFT00 = 0xfe32
X25519 = 0x001d
SECP256R1 = 0x0017
SUPPORTED_GROUPS = (X25519MLKEM768, P256_KYBER768_DRAFT00, X25519, SECP256R1)
# X25519MLKEM768 client share: an ML-KEM-768 encapsulation key (FIPS 203: 3 x 384 + 32 = 1184 bytes)
# followed by an X25519 public key (32): draft-ietf-tls-ecdhe-mlkem, 1216 bytes in all.
MLKEM768_ENCAPSULATION_KEY = 1184
X25519_SHARE = 32
X25519MLKEM768_SHARE = MLKEM768_ENCAPSULATION_KEY + X25519_SHARE
MLKEM_Q = 3329


def hkdf_extract(salt, key_material):
    """HKDF-Extract with SHA-256 (RFC 5869 section 2.2), as QUIC's initial secrets use it (RFC 9001 section 5.2)."""
    return hmac.new(salt, key_material, hashlib.sha256).digest()


def hkdf_expand_label(secret, label, length, context=b''):
    """TLS 1.3 HKDF-Expand-Label (RFC 8446, 7.1) with SHA-256."""
    full_label = b'tls13 ' + label
    info = struct.pack('>HB', length, len(full_label)) + full_label + struct.pack('B', len(context)) + context
    output, block, counter = b'', b'', 1
    while len(output) < length:
        block = hmac.new(secret, block + info + struct.pack('B', counter), hashlib.sha256).digest()
        output += block
        counter += 1
    return output[:length]


def initial_keys(destination_cid, side=b'client in'):
    """(key, iv, hp) protecting Initial packets of one side (RFC 9001, 5.2)."""
    initial_secret = hkdf_extract(INITIAL_SALT_V1, destination_cid)
    secret = hkdf_expand_label(initial_secret, side, 32)
    return (hkdf_expand_label(secret, b'quic key', 16), hkdf_expand_label(secret, b'quic iv', 12),
            hkdf_expand_label(secret, b'quic hp', 16))


def varint(value):
    """QUIC variable-length integer (RFC 9000, 16)."""
    if value < 0x40:
        return struct.pack('>B', value)
    if value < 0x4000:
        return struct.pack('>H', value | 0x4000)
    if value < 0x40000000:
        return struct.pack('>I', value | 0x80000000)
    return struct.pack('>Q', value | 0xC000000000000000)


def protect(header, payload, packet_number, keys, pn_length):
    """Encrypt ``payload`` and mask ``header``, whose last ``pn_length`` bytes are the packet number."""
    key, iv, hp = keys
    nonce = (int.from_bytes(iv, 'big') ^ packet_number).to_bytes(12, 'big')
    sealed = aes_gcm_encrypt(key, nonce, payload, header)
    # The sample starts 4 bytes after the start of the packet number (RFC 9001, 5.4.2).
    sample_offset = 4 - pn_length
    mask = aes_ecb_block(hp, sealed[sample_offset:sample_offset + 16])
    first = header[0] ^ (mask[0] & (0x0F if header[0] & 0x80 else 0x1F))
    pn_start = len(header) - pn_length
    masked_pn = bytes(b ^ m for b, m in zip(header[pn_start:], mask[1:1 + pn_length]))
    return bytes([first]) + header[1:pn_start] + masked_pn + sealed


def extension(kind, body):
    """One TLS extension: its type and length, then its body (RFC 8446 section 4.2)."""
    return struct.pack('>HH', kind, len(body)) + body


def vector(body, length_bytes):
    """A TLS variable-length vector: the body behind its length in ``length_bytes`` bytes (RFC 8446 section 3.4)."""
    return len(body).to_bytes(length_bytes, 'big') + body


def mlkem768_encapsulation_key():
    """A well-formed ML-KEM-768 encapsulation key (FIPS 203, 7.2: every coefficient below q).

    Random bytes would not do: a server that implements ML-KEM checks that
    each 12-bit coefficient is below 3329 and rejects the key otherwise. No
    decapsulation key exists for it; the handshake is never completed.
    """
    raw = os.urandom(2 * 768)
    coefficients = [int.from_bytes(raw[i:i + 2], 'big') % MLKEM_Q for i in range(0, len(raw), 2)]
    packed = bytearray()
    for index in range(0, len(coefficients), 2):  # ByteEncode12: two coefficients in three bytes
        pair = coefficients[index] | (coefficients[index + 1] << 12)
        packed += pair.to_bytes(3, 'little')
    return bytes(packed) + os.urandom(32)  # + rho, the matrix seed


def client_hello(server_name, alpn, source_cid, random=None, key_share=None, post_quantum=False):
    """A TLS 1.3 ClientHello handshake message as QUIC carries it (RFC 9001, 4.1).

    ``post_quantum`` offers what cloudflared offers (SUPPORTED_GROUPS, an
    X25519MLKEM768 share first) plus an X25519 share; without it the hello
    offers X25519 only and fits one Initial.
    """
    random = os.urandom(32) if random is None else random
    # Any 32 bytes are an X25519 public key the server can compute with; no
    # private key is ever needed because the handshake is never completed.
    key_share = os.urandom(32) if key_share is None else key_share
    host = server_name.encode('ascii')
    transport_parameters = (
        varint(0x0f) + vector(source_cid, 1)              # initial_source_connection_id
        + varint(0x04) + vector(varint(1048576), 1)       # initial_max_data
        + varint(0x01) + vector(varint(30000), 1)         # max_idle_timeout (ms)
        + varint(0x03) + vector(varint(1452), 1)          # max_udp_payload_size
    )
    if post_quantum:
        groups = SUPPORTED_GROUPS
        shares = (struct.pack('>HH', X25519MLKEM768, X25519MLKEM768_SHARE) + mlkem768_encapsulation_key() + key_share
                  + struct.pack('>HH', X25519, X25519_SHARE) + key_share)
    else:
        groups = (X25519, SECP256R1, 0x0018)
        shares = struct.pack('>HH', X25519, X25519_SHARE) + key_share
    extensions = b''.join((
        extension(0x0000, vector(b'\x00' + vector(host, 2), 2)),                 # server_name
        extension(0x000a, vector(struct.pack('>%dH' % len(groups), *groups), 2)),  # supported_groups
        extension(0x0010, vector(vector(alpn.encode('ascii'), 1), 2)),         # ALPN
        extension(0x000d, vector(struct.pack('>5H', 0x0403, 0x0804, 0x0401, 0x0503, 0x0805), 2)),  # signature_algorithms
        extension(0x0033, vector(shares, 2)),                                    # key_share
        extension(0x002b, vector(struct.pack('>H', 0x0304), 1)),                 # supported_versions: TLS 1.3
        extension(0x002d, vector(b'\x01', 1)),                                   # psk_key_exchange_modes
        extension(0x0039, transport_parameters),                                  # quic_transport_parameters
    ))
    body = (struct.pack('>H', 0x0303) + random + vector(b'', 1)
            + vector(struct.pack('>3H', 0x1301, 0x1302, 0x1303), 2)  # TLS_AES_128_GCM_SHA256, ...
            + vector(b'\x00', 1) + vector(extensions, 2))
    return b'\x01' + len(body).to_bytes(3, 'big') + body


PN_LENGTH = 4


def _initial_packet(hello, offset, packet_number, size, destination_cid, source_cid, keys):
    """One protected Initial of exactly ``size`` bytes carrying as much of ``hello`` from ``offset`` as fits.

    Returns ``(packet, next offset)``. The Length field is always 2 bytes
    here (between 64 and 16383), the packet number 4.
    """
    prefix = (bytes([0xC0 | (PN_LENGTH - 1)]) + struct.pack('>I', QUIC_V1)
              + vector(destination_cid, 1) + vector(source_cid, 1) + varint(0))  # no token
    payload_length = size - len(prefix) - 2 - PN_LENGTH - AEAD_TAG
    if payload_length < 64:
        raise ValueError('an Initial of %d bytes has no room for a CRYPTO frame' % size)
    # CRYPTO frame: type, offset, length (2-byte varint up to 16383), data; the rest is PADDING (zero bytes).
    chunk = min(len(hello) - offset, payload_length - 1 - len(varint(offset)) - 2)
    frame = b'\x06' + varint(offset) + struct.pack('>H', chunk | 0x4000) + hello[offset:offset + chunk]
    payload = frame.ljust(payload_length, b'\0')
    header = prefix + varint(PN_LENGTH + len(payload) + AEAD_TAG) + packet_number.to_bytes(PN_LENGTH, 'big')
    return protect(header, payload, packet_number, keys, PN_LENGTH), offset + chunk


def initial_datagrams(server_name, alpn='argotunnel', destination_cid=None, source_cid=None,
                      size=MIN_INITIAL_DATAGRAM, post_quantum=False):
    """The protected client Initials of one connection attempt, each exactly ``size`` bytes, with its connection IDs.

    The ClientHello is cut into CRYPTO frames at increasing offsets, one per
    Initial (packet numbers 0, 1, ...), as quic-go sends it. Returns
    ``(datagrams, destination_cid, source_cid)``; fresh random connection
    IDs unless given.
    """
    if size < MIN_INITIAL_DATAGRAM:
        raise ValueError('size=%r: a client Initial is at least %d bytes (RFC 9000, 14.1)' % (size, MIN_INITIAL_DATAGRAM))
    destination_cid = os.urandom(8) if destination_cid is None else destination_cid
    source_cid = os.urandom(8) if source_cid is None else source_cid
    hello = client_hello(server_name, alpn, source_cid, post_quantum=post_quantum)
    keys = initial_keys(destination_cid)
    datagrams, offset = [], 0
    while offset < len(hello):
        packet, offset = _initial_packet(hello, offset, len(datagrams), size, destination_cid, source_cid, keys)
        datagrams.append(packet)
    return datagrams, destination_cid, source_cid


def cloudflared_datagrams(server_name, family, alpn='argotunnel'):
    """What cloudflared sends first to an edge address of ``family``: its Initial size, a post-quantum ClientHello."""
    return initial_datagrams(server_name, alpn, size=INITIAL_PAYLOAD[family], post_quantum=True)


def precheck_datagrams(alpn='argotunnel'):
    """What cloudflared's pre-check sends first: 1280-byte Initials with SNI probe.cftunnel.com, a post-quantum hello."""
    return initial_datagrams(PRECHECK_SERVER_NAME, alpn, size=PRECHECK_INITIAL_PAYLOAD, post_quantum=True)


def initial_datagram(server_name, alpn='argotunnel', destination_cid=None, source_cid=None):
    """One protected client Initial padded to 1200 bytes (an X25519-only ClientHello), with its connection IDs.

    Returns ``(datagram, destination_cid, source_cid)``. The probe sends it
    only to tell a size problem from a blocked port.
    """
    datagrams, destination_cid, source_cid = initial_datagrams(server_name, alpn, destination_cid, source_cid)
    return datagrams[0], destination_cid, source_cid


def read_varint(data, offset):
    """``(value, next offset)`` of the QUIC varint at ``offset``."""
    length = 1 << (data[offset] >> 6)
    value = data[offset] & 0x3F
    for byte in data[offset + 1:offset + length]:
        value = (value << 8) | byte
    if offset + length > len(data):
        raise ValueError('truncated varint')
    return value, offset + length


LONG_PACKET_TYPES = {0: 'initial', 1: '0-rtt', 2: 'handshake', 3: 'retry'}
# TLS alerts arrive as CRYPTO_ERROR 0x100 + alert (RFC 9001, 4.8).
TLS_ALERTS = {40: 'handshake_failure', 70: 'protocol_version', 80: 'internal_error', 112: 'unrecognized_name',
              120: 'no_application_protocol'}


def _skip_varints(data, offset, count):
    for dummy in range(count):
        offset = read_varint(data, offset)[1]
    return offset


def _frames(payload):
    """Yield ``(kind, value)`` for the frames a server Initial carries."""
    offset = 0
    while offset < len(payload):
        frame_type, offset = read_varint(payload, offset)
        if frame_type in (0x00, 0x01):  # PADDING, PING
            continue
        if frame_type in (0x02, 0x03):  # ACK: largest, delay, range count, first range, ranges, ECN counts
            offset = _skip_varints(payload, offset, 2)
            ranges, offset = read_varint(payload, offset)
            offset = _skip_varints(payload, offset, 1 + 2 * ranges + (3 if frame_type == 0x03 else 0))
            yield 'ack', None
            continue
        if frame_type == 0x06:  # CRYPTO: offset, length, data
            offset = _skip_varints(payload, offset, 1)
            length, offset = read_varint(payload, offset)
            yield 'crypto', payload[offset:offset + length]
            offset += length
            continue
        if frame_type in (0x1C, 0x1D):  # CONNECTION_CLOSE
            code, offset = read_varint(payload, offset)
            if frame_type == 0x1C:
                offset = _skip_varints(payload, offset, 1)  # the frame type that caused it
            length, offset = read_varint(payload, offset)
            yield 'close', (code, payload[offset:offset + length].decode('utf-8', 'replace'))
            return
        return  # a frame an Initial does not carry: stop rather than guess


def read_answer(datagram, destination_cid, source_cid):
    """What a server's first datagram says about the handshake.

    Returns a dict with ``packet`` (initial, handshake, retry,
    version_negotiation or None when the datagram is not an answer to us),
    ``server_hello`` (the server accepted our ClientHello: ALPN and TLS
    version agreed) and ``close`` (``(error code, reason)`` when the server
    closed the connection instead, e.g. on an ALPN mismatch) and
    ``ack_only`` (a readable Initial that only acknowledges: the server got
    part of our ClientHello and waits for the rest - not an answer yet).
    """
    answer = {'packet': None, 'server_hello': False, 'close': None, 'ack_only': False}
    if not is_answer(datagram, source_cid):
        return answer
    if struct.unpack('>I', datagram[1:5])[0] == 0:
        answer['packet'] = 'version_negotiation'
        return answer
    answer['packet'] = LONG_PACKET_TYPES[(datagram[0] >> 4) & 0x03]
    if answer['packet'] != 'initial':
        return answer
    try:
        offset = 6 + datagram[5]
        offset += 1 + datagram[offset]                # source connection ID
        token_length, offset = read_varint(datagram, offset)
        length, pn_offset = read_varint(datagram, offset + token_length)
        key, iv, hp = initial_keys(destination_cid, b'server in')
        mask = aes_ecb_block(hp, datagram[pn_offset + 4:pn_offset + 20])
        first = datagram[0] ^ (mask[0] & 0x0F)
        pn_length = (first & 0x03) + 1
        masked = datagram[pn_offset:pn_offset + pn_length]
        packet_number = int.from_bytes(bytes(b ^ m for b, m in zip(masked, mask[1:])), 'big')
        header = bytes([first]) + datagram[1:pn_offset] + packet_number.to_bytes(pn_length, 'big')
        nonce = (int.from_bytes(iv, 'big') ^ packet_number).to_bytes(12, 'big')
        payload = aes_gcm_decrypt(key, nonce, datagram[pn_offset + pn_length:pn_offset + length], header)
        frames = list(_frames(payload))
        for kind, value in frames:
            if kind == 'crypto' and value[:1] == b'\x02':
                answer['server_hello'] = True
            elif kind == 'close':
                answer['close'] = value
        answer['ack_only'] = bool(frames) and all(kind == 'ack' for kind, value in frames)
    except (IndexError, ValueError, AuthenticationError):
        # Not decryptable with our Initial keys: still a QUIC answer, just not a readable one.
        pass
    return answer


def describe_close(close):
    """A server's CONNECTION_CLOSE ``(code, reason)`` in words, naming the TLS alert a crypto error carries."""
    code, reason = close
    if 0x100 <= code <= 0x1FF:
        alert = TLS_ALERTS.get(code - 0x100, 'alert %d' % (code - 0x100))
        return 'closed by the server: TLS %s%s' % (alert, ' (%s)' % reason if reason else '')
    return 'closed by the server: error 0x%x%s' % (code, ' (%s)' % reason if reason else '')


def is_answer(datagram, source_cid):
    """True when ``datagram`` starts with a QUIC long-header packet for our connection.

    A server answers a client Initial with its own Initial (and Handshake),
    a Retry, or a Version Negotiation: all long-header packets whose
    Destination Connection ID is the client's Source Connection ID.
    """
    if len(datagram) < 7 or not datagram[0] & 0x80:
        return False
    dcid_length = datagram[5]
    return datagram[6:6 + dcid_length] == source_cid
