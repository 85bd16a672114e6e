# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloudflared's TLS ClientHello on TCP 7844, and what the first bytes of the server's answer say.

cloudflared's http2 transport dials the edge with Go's crypto/tls and the
curve preferences of ``crypto/curves.go`` (post-quantum "prefer" mode, the
default: X25519MLKEM768, P256Kyber768Draft00, P-256), applied per connection
in ``supervisor/tunnel.go``. Go sends a key share for the first group only,
so the hello carries a 1216-byte X25519MLKEM768 share: about 1.4 KB, more
than one full TCP segment on most paths. Python's ssl module cannot send
such a hello, so the probe builds it here - with the pieces of the QUIC
ClientHello (quic_initial) - and only reads the answer's first record: a
ServerHello, a HelloRetryRequest (a server without ML-KEM asks for P-256)
or an alert. The handshake is never completed; the certificate is checked
by the probe's ordinary handshake (reachability).

The other fields follow Go's client defaults (cipher suites, signature
algorithms, extensions, a 32-byte legacy session ID); they move the size by
a few bytes at most, the key share is what makes it large.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import struct

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.quic_initial import (
    P256_KYBER768_DRAFT00, SECP256R1, X25519MLKEM768, X25519MLKEM768_SHARE, extension, mlkem768_encapsulation_key,
    vector)

# crypto/curves.go, postQuantumPreferCurves.
GROUPS = (X25519MLKEM768, P256_KYBER768_DRAFT00, SECP256R1)
# Go's default client suites: TLS 1.2 ECDHE suites, then the three TLS 1.3 suites.
CIPHER_SUITES = (0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc009, 0xc013, 0xc00a, 0xc014,
                 0x1301, 0x1302, 0x1303)
SIGNATURE_ALGORITHMS = (0x0804, 0x0403, 0x0807, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0503, 0x0603)
HANDSHAKE = 0x16
ALERT = 0x15
SERVER_HELLO = 0x02
# RFC 8446, 4.1.3: a HelloRetryRequest is a ServerHello with this random.
HELLO_RETRY_RANDOM = bytes.fromhex('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c')
ALERTS = {40: 'handshake_failure', 47: 'illegal_parameter', 70: 'protocol_version', 71: 'insufficient_security',
          80: 'internal_error', 112: 'unrecognized_name'}


def client_hello(server_name, random=None, session_id=None):
    """cloudflared's ClientHello for the http2 transport, as one TLS record (bytes to write to the socket)."""
    random = os.urandom(32) if random is None else random
    session_id = os.urandom(32) if session_id is None else session_id
    host = server_name.encode('ascii')
    share = struct.pack('>HH', X25519MLKEM768, X25519MLKEM768_SHARE) + mlkem768_encapsulation_key() + os.urandom(32)
    extensions = b''.join((
        extension(0x0000, vector(b'\x00' + vector(host, 2), 2)),                          # server_name
        extension(0x0005, b'\x01\x00\x00\x00\x00'),                                         # status_request (OCSP)
        extension(0x000a, vector(struct.pack('>%dH' % len(GROUPS), *GROUPS), 2)),          # supported_groups
        extension(0x000b, vector(b'\x00', 1)),                                             # ec_point_formats
        extension(0x0023, b''),                                                            # session_ticket
        extension(0x000d, vector(struct.pack('>%dH' % len(SIGNATURE_ALGORITHMS), *SIGNATURE_ALGORITHMS), 2)),
        extension(0xff01, b'\x00'),                                                        # renegotiation_info
        extension(0x0017, b''),                                                            # extended_master_secret
        extension(0x0012, b''),                                                            # signed_certificate_timestamp
        extension(0x002b, vector(struct.pack('>2H', 0x0304, 0x0303), 1)),                  # supported_versions
        extension(0x0033, vector(share, 2)),                                               # key_share
        extension(0x002d, vector(b'\x01', 1)),                                             # psk_key_exchange_modes
    ))
    body = (struct.pack('>H', 0x0303) + random + vector(session_id, 1)
            + vector(struct.pack('>%dH' % len(CIPHER_SUITES), *CIPHER_SUITES), 2)
            + vector(b'\x00', 1) + vector(extensions, 2))
    handshake = b'\x01' + len(body).to_bytes(3, 'big') + body
    return struct.pack('>BHH', HANDSHAKE, 0x0301, len(handshake)) + handshake


def read_answer(data):
    """What the first bytes of the server's answer are: ``None`` while too few have come, else a dict.

    ``kind`` is ``server_hello``, ``hello_retry_request`` (both prove the
    hello arrived whole and was accepted), ``alert`` (with ``alert``, its
    name: the hello arrived, the server refused it) or ``not_tls``.
    """
    if len(data) < 5:
        return None
    content_type = data[0]
    if content_type == ALERT:
        if len(data) < 7:
            return None
        return {'kind': 'alert', 'alert': ALERTS.get(data[6], 'alert %d' % data[6])}
    if content_type != HANDSHAKE or data[1] != 0x03:
        return {'kind': 'not_tls'}
    if len(data) < 5 + 4 + 2 + 32:
        return None
    if data[5] != SERVER_HELLO:
        return {'kind': 'not_tls'}
    random = data[5 + 4 + 2:5 + 4 + 2 + 32]
    return {'kind': 'hello_retry_request' if random == HELLO_RETRY_RANDOM else 'server_hello'}
