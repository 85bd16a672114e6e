# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AES-128 and AES-128-GCM encryption in pure Python, for QUIC Initial packets.

Managed hosts may lack the ``cryptography`` package, and a QUIC Initial must
be protected with AES-128-GCM (RFC 9001, section 5). Only encryption is
needed: the probe never decrypts what the server sends back. When
``cryptography`` is importable its AES is used instead, which is faster;
both paths are tested against the same vectors.

This is not a general-purpose cipher: it protects nothing secret (Initial
keys derive from a connection ID sent in clear) and makes no attempt at
constant time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # the pure-Python path below does the job
    AESGCM = None


def _xtime(value):
    value <<= 1
    return value ^ 0x11B if value & 0x100 else value


def _gf_mul(a, b):
    product = 0
    while b:
        if b & 1:
            product ^= a
        a = _xtime(a)
        b >>= 1
    return product


def _make_sbox():
    # The S-box is the multiplicative inverse in GF(2^8) followed by an affine map.
    sbox = [0] * 256
    for x in range(256):
        inverse = 0
        if x:
            inverse = next(y for y in range(1, 256) if _gf_mul(x, y) == 1)
        s = inverse
        for shift in range(1, 5):
            s ^= ((inverse << shift) | (inverse >> (8 - shift))) & 0xFF
        sbox[x] = s ^ 0x63
    return sbox


SBOX = _make_sbox()
# T-tables fold SubBytes, ShiftRows and MixColumns into four lookups a column.
_T0 = [(_gf_mul(s, 2) << 24) | (s << 16) | (s << 8) | _gf_mul(s, 3) for s in SBOX]
_T1 = [((t >> 8) | (t << 24)) & 0xFFFFFFFF for t in _T0]
_T2 = [((t >> 16) | (t << 16)) & 0xFFFFFFFF for t in _T0]
_T3 = [((t >> 24) | (t << 8)) & 0xFFFFFFFF for t in _T0]


def expand_key(key):
    """The 44 round-key words of AES-128."""
    if len(key) != 16:
        raise ValueError('AES-128 needs a 16-byte key')
    words = list(struct.unpack('>4I', key))
    rcon = 1
    for i in range(4, 44):
        word = words[i - 1]
        if i % 4 == 0:
            word = ((word << 8) | (word >> 24)) & 0xFFFFFFFF
            word = ((SBOX[word >> 24] << 24) | (SBOX[(word >> 16) & 0xFF] << 16)
                    | (SBOX[(word >> 8) & 0xFF] << 8) | SBOX[word & 0xFF])
            word ^= rcon << 24
            rcon = _xtime(rcon)
        words.append(words[i - 4] ^ word)
    return words


def encrypt_block(round_keys, block):
    """AES-128 encryption of one 16-byte block."""
    rk = round_keys
    s0, s1, s2, s3 = struct.unpack('>4I', block)
    s0 ^= rk[0]
    s1 ^= rk[1]
    s2 ^= rk[2]
    s3 ^= rk[3]
    t0_, t1_, t2_, t3_ = _T0, _T1, _T2, _T3
    for r in range(1, 10):
        k = 4 * r
        n0 = t0_[s0 >> 24] ^ t1_[(s1 >> 16) & 0xFF] ^ t2_[(s2 >> 8) & 0xFF] ^ t3_[s3 & 0xFF] ^ rk[k]
        n1 = t0_[s1 >> 24] ^ t1_[(s2 >> 16) & 0xFF] ^ t2_[(s3 >> 8) & 0xFF] ^ t3_[s0 & 0xFF] ^ rk[k + 1]
        n2 = t0_[s2 >> 24] ^ t1_[(s3 >> 16) & 0xFF] ^ t2_[(s0 >> 8) & 0xFF] ^ t3_[s1 & 0xFF] ^ rk[k + 2]
        n3 = t0_[s3 >> 24] ^ t1_[(s0 >> 16) & 0xFF] ^ t2_[(s1 >> 8) & 0xFF] ^ t3_[s2 & 0xFF] ^ rk[k + 3]
        s0, s1, s2, s3 = n0, n1, n2, n3
    sb = SBOX
    out = []
    for i, (a, b, c, d) in enumerate(((s0, s1, s2, s3), (s1, s2, s3, s0), (s2, s3, s0, s1), (s3, s0, s1, s2))):
        out.append(((sb[a >> 24] << 24) | (sb[(b >> 16) & 0xFF] << 16) | (sb[(c >> 8) & 0xFF] << 8)
                    | sb[d & 0xFF]) ^ rk[40 + i])
    return struct.pack('>4I', *out)


def aes_ecb_block(key, block):
    """One AES-128 block: QUIC header protection takes its mask from this (RFC 9001, 5.4.3)."""
    if AESGCM is not None:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # nosec: one block, as RFC 9001 asks
        return encryptor.update(block) + encryptor.finalize()
    return encrypt_block(expand_key(key), block)


_R = 0xE1 << 120


def _ghash_table(h):
    """Shoup's 4-bit table: the 16 multiples of H that GHASH needs per nibble."""
    table = [0] * 16
    table[8] = h
    v = h
    for i in (4, 2, 1):
        v = (v >> 1) ^ _R if v & 1 else v >> 1
        table[i] = v
    for i in (2, 4, 8):
        for j in range(1, i):
            table[i + j] = table[i] ^ table[j]
    return table


def _gmul(x, table):
    """x * H in GF(2^128), GCM's bit order, four bits a step."""
    z = 0
    for shift in range(0, 128, 4):
        nibble = (x >> shift) & 0xF
        low = z & 0xF
        z = (z >> 4) ^ _REDUCE_TABLE[low]
        z ^= table[nibble]
    return z


def _make_reduce_table():
    # Shifting z right by 4 drops its low nibble; each dropped bit b (0..3, LSB first)
    # folds back as R shifted right by (3 - b).
    table = []
    for low in range(16):
        value = 0
        for bit in range(4):
            if low & (1 << bit):
                value ^= _R >> (3 - bit)
        table.append(value)
    return table


_REDUCE_TABLE = _make_reduce_table()


def _ghash(table, aad, ciphertext):
    x = 0
    for data in (aad, ciphertext):
        for offset in range(0, len(data), 16):
            chunk = data[offset:offset + 16]
            x = _gmul(x ^ int.from_bytes(chunk.ljust(16, b'\0'), 'big'), table)
    lengths = (len(aad) * 8 << 64) | (len(ciphertext) * 8)
    return _gmul(x ^ lengths, table)


class AuthenticationError(ValueError):
    """The tag does not match: the packet was not sealed with this key."""


def _ctr(round_keys, counter, data):
    out = bytearray()
    for index, offset in enumerate(range(0, len(data), 16)):
        keystream = encrypt_block(round_keys, (counter | ((index + 2) & 0xFFFFFFFF)).to_bytes(16, 'big'))
        out += bytes(a ^ b for a, b in zip(data[offset:offset + 16], keystream))
    return bytes(out)


def _tag(round_keys, counter, aad, ciphertext):
    h = int.from_bytes(encrypt_block(round_keys, bytes(16)), 'big')
    mask = int.from_bytes(encrypt_block(round_keys, (counter | 1).to_bytes(16, 'big')), 'big')
    return (_ghash(_ghash_table(h), aad, ciphertext) ^ mask).to_bytes(16, 'big')


def aes_gcm_encrypt(key, nonce, plaintext, aad):
    """AES-128-GCM with a 12-byte nonce: ciphertext followed by the 16-byte tag."""
    if AESGCM is not None:
        return AESGCM(key).encrypt(nonce, plaintext, aad)
    round_keys = expand_key(key)
    counter = int.from_bytes(nonce, 'big') << 32
    ciphertext = _ctr(round_keys, counter, plaintext)
    return ciphertext + _tag(round_keys, counter, aad, ciphertext)


def aes_gcm_decrypt(key, nonce, sealed, aad):
    """Inverse of aes_gcm_encrypt; raises AuthenticationError on a wrong tag."""
    if len(sealed) < 16:
        raise AuthenticationError('too short for a tag')
    if AESGCM is not None:
        try:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        except Exception as exc:  # cryptography's InvalidTag; keep one error type for callers
            raise AuthenticationError(str(exc) or 'invalid tag')
    round_keys = expand_key(key)
    counter = int.from_bytes(nonce, 'big') << 32
    ciphertext, tag = sealed[:-16], sealed[-16:]
    if _tag(round_keys, counter, aad, ciphertext) != tag:
        raise AuthenticationError('invalid tag')
    return _ctr(round_keys, counter, ciphertext)
