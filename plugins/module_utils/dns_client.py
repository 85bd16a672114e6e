# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small stub resolver (RFC 1035) for managed hosts, standard library only.

``socket.getaddrinfo`` cannot ask for SRV records, and cloudflared's first
query is a SRV query; the probe asks the host's own nameservers
(``/etc/resolv.conf``) the same questions cloudflared asks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import ipaddress
import os
import socket
import struct
import time

TYPES = {'A': 1, 'AAAA': 28, 'CNAME': 5, 'SRV': 33, 'TXT': 16}
TYPE_NAMES = dict((number, name) for name, number in TYPES.items())
RCODES = {0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED'}
# systemd-resolved's upstream servers, behind its 127.0.0.53 stub.
SYSTEMD_RESOLV_CONF = '/run/systemd/resolve/resolv.conf'


def read_resolv_conf(path='/etc/resolv.conf'):
    """The nameserver addresses of a resolv.conf, in order, each once; [] when there are none."""
    nameservers = []
    try:
        with open(path) as handle:
            for line in handle:
                fields = line.split('#', 1)[0].split(';', 1)[0].split()
                if len(fields) >= 2 and fields[0] == 'nameserver':
                    try:
                        address = str(ipaddress.ip_address(fields[1].split('%', 1)[0]))
                    except ValueError:
                        continue
                    if address not in nameservers:
                        nameservers.append(address)
    except (IOError, OSError, ValueError):  # ValueError: a path with a NUL byte
        return []
    return nameservers


def resolvers_to_allow(resolv_conf_servers, stub_upstream_servers):
    """The nameservers a default-deny host must be able to reach.

    Loopback ones (a local stub such as systemd-resolved) are reachable anyway - every firewall lets loopback out -
    but the stub itself must reach its upstream servers, so those (from /run/systemd/resolve/resolv.conf) come in
    whenever a loopback resolver is listed. Scope ids (fe80::1%eth0) are dropped; duplicates too.
    """
    result = []
    local = False
    for server in resolv_conf_servers:
        server = server.split('%')[0]
        if ipaddress.ip_address(server).is_loopback:
            local = True
        elif server not in result:
            result.append(server)
    if local:
        result.extend(s for s in (u.split('%')[0] for u in stub_upstream_servers)
                      if s not in result and not ipaddress.ip_address(s).is_loopback)
    return result


def encode_name(name):
    """A host name in DNS wire format (length-prefixed labels, IDNA-encoded); ValueError for an empty or long label."""
    out = b''
    for label in name.rstrip('.').split('.'):
        raw = label.encode('idna') if label else b''
        if not raw or len(raw) > 63:
            raise ValueError('invalid DNS name %r' % name)
        out += struct.pack('B', len(raw)) + raw
    return out + b'\0'


def build_query(name, qtype, query_id):
    """A recursive query for one name and type."""
    return struct.pack('>HHHHHH', query_id, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack('>HH', TYPES[qtype], 1)


def _read_name(message, offset, depth=0):
    labels = []
    while True:
        if depth > 20 or offset >= len(message):
            raise ValueError('malformed name')
        length = message[offset]
        if length & 0xC0 == 0xC0:  # compression pointer
            pointer = struct.unpack('>H', message[offset:offset + 2])[0] & 0x3FFF
            labels.append(_read_name(message, pointer, depth + 1)[0])
            return '.'.join(l for l in labels if l), offset + 2
        offset += 1
        if not length:
            return '.'.join(labels), offset
        labels.append(message[offset:offset + length].decode('ascii', 'replace').lower())
        offset += length


def parse_response(message, query_id):
    """``(rcode name, truncated, answers)``; answers are (name, type, ttl, value) tuples.

    A and AAAA values are address strings, SRV values (priority, weight,
    port, target) tuples, CNAME values names, TXT values their strings
    joined. Other types are skipped.
    """
    if len(message) < 12:
        raise ValueError('short DNS message')
    response_id, flags, questions, answer_count = struct.unpack('>HHHH', message[:8])
    if response_id != query_id or not flags & 0x8000:
        raise ValueError('not the answer to our query')
    offset = 12
    for dummy in range(questions):
        offset = _read_name(message, offset)[1] + 4
    answers = []
    for dummy in range(answer_count):
        name, offset = _read_name(message, offset)
        rtype, dummy, ttl, length = struct.unpack('>HHIH', message[offset:offset + 10])
        offset += 10
        data = message[offset:offset + length]
        if rtype == TYPES['A'] and length == 4:
            answers.append((name, 'A', ttl, socket.inet_ntop(socket.AF_INET, data)))
        elif rtype == TYPES['AAAA'] and length == 16:
            answers.append((name, 'AAAA', ttl, socket.inet_ntop(socket.AF_INET6, data)))
        elif rtype == TYPES['SRV']:
            priority, weight, port = struct.unpack('>HHH', data[:6])
            answers.append((name, 'SRV', ttl, (priority, weight, port, _read_name(message, offset + 6)[0])))
        elif rtype == TYPES['TXT']:
            strings, at = [], 0
            while at < len(data):  # one or more <character-string>s: a length byte, then the bytes
                strings.append(data[at + 1:at + 1 + data[at]].decode('utf-8', 'replace'))
                at += 1 + data[at]
            answers.append((name, 'TXT', ttl, ''.join(strings)))
        elif rtype == TYPES['CNAME']:
            answers.append((name, 'CNAME', ttl, _read_name(message, offset)[0]))
        offset += length
    return RCODES.get(flags & 0x0F, 'RCODE%d' % (flags & 0x0F)), bool(flags & 0x0200), answers


def _is_reply_to(data, payload):
    """Same ID, QR set, same question: anything else on the socket is a stray (late or spoofed) datagram."""
    return len(data) >= 12 and data[:2] == payload[:2] and bool(data[2] & 0x80) \
        and data[12:len(payload)].lower() == payload[12:].lower()


def answers_for(name, qtype, answers):
    """``(records of qtype owned by name or its CNAME chain, TTLs of that chain's CNAMEs)``.

    A record whose owner is neither the question nor a name the CNAME chain
    leads to answers another question (cache poisoning tries exactly that):
    it is dropped.
    """
    owner = name.rstrip('.').lower()
    chain_ttls = []
    for dummy in range(16):  # a loop of CNAMEs ends here
        cname = [a for a in answers if a[1] == 'CNAME' and a[0] == owner]
        if not cname or qtype == 'CNAME':
            break
        chain_ttls.append(cname[0][2])
        owner = cname[0][3].rstrip('.').lower()
    return [a for a in answers if a[1] == qtype and a[0] == owner], chain_ttls


def _exchange(nameserver, port, payload, timeout, tcp):
    family = socket.AF_INET6 if ':' in nameserver else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.connect((nameserver, port))
        if not tcp:
            sock.send(payload)
            # Keep reading until our reply or the deadline: one stray datagram must not end the wait.
            deadline = time.time() + timeout
            while True:
                data = sock.recv(65535)
                if _is_reply_to(data, payload):
                    return data
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise socket.timeout('timed out')
                sock.settimeout(remaining)
        sock.sendall(struct.pack('>H', len(payload)) + payload)
        data = b''
        while len(data) < 2 or len(data) < 2 + struct.unpack('>H', data[:2])[0]:
            chunk = sock.recv(65535)
            if not chunk:
                raise socket.error(errno.ECONNRESET, 'connection closed mid-answer')
            data += chunk
        return data[2:]
    finally:
        sock.close()


def error_kind(exc):
    """One word for why a socket operation failed; the probe uses the same words."""
    if isinstance(exc, socket.timeout):
        return 'timeout'
    number = getattr(exc, 'errno', None)
    if number == errno.ECONNREFUSED:
        return 'refused'
    if number in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
        return 'unreachable'
    if number in (errno.EPERM, errno.EACCES):
        return 'blocked_locally'
    if number == errno.ECONNRESET:
        return 'reset'
    return 'error'


# Error kinds that are an answer - "no such name", "no such record" - rather than a question that never got one.
ABSENT_KINDS = ('nxdomain', 'no_answer')


def answer_state(answer):
    """``ok``, ``absent`` (the nameserver answered: no such name or record) or ``blocked`` (no answer came back:
    a timeout, a refusal, a SERVFAIL) for one result of resolve() (or the Windows module's equivalent)."""
    if answer.get('ok'):
        return 'ok'
    return 'absent' if answer.get('error_kind') in ABSENT_KINDS else 'blocked'


def resolve(name, qtype, nameservers, timeout, port=53):
    """Ask each nameserver in turn until one answers; never raises.

    Returns a dict: ``ok``, ``rcode``, ``answers`` (values of ``qtype``,
    after CNAMEs), ``ttl``, ``nameserver``, ``error_kind``, ``message`` and
    ``latency_ms``.
    """
    started = time.time()
    result = {'name': name, 'type': qtype, 'ok': False, 'rcode': None, 'answers': [], 'ttl': None,
              'nameserver': None, 'error_kind': 'no_nameserver', 'message': 'no nameserver in resolv.conf'}
    for nameserver in nameservers:
        result['nameserver'] = nameserver
        try:
            # Inside the try: a name that cannot be encoded (a..b, a label of 64 bytes) is a result, not an exception.
            query_id = struct.unpack('>H', os.urandom(2))[0]
            payload = build_query(name, qtype, query_id)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            result.update(error_kind='invalid_name', message='cannot ask for %s %r: %s' % (qtype, name, exc))
            break
        try:
            rcode, truncated, answers = parse_response(_exchange(nameserver, port, payload, timeout, False), query_id)
            if truncated:
                rcode, truncated, answers = parse_response(_exchange(nameserver, port, payload, timeout, True), query_id)
        except (socket.error, socket.timeout, ValueError, struct.error, IndexError) as exc:
            malformed = isinstance(exc, (ValueError, struct.error, IndexError))
            result.update(error_kind='malformed' if malformed else error_kind(exc),
                          message='%s: %s' % (nameserver, exc or 'timed out'))
            continue
        values, chain_ttls = answers_for(name, qtype, answers)
        result.update(rcode=rcode, answers=sorted(set(a[3] for a in values)),
                      ttl=min([a[2] for a in values] + chain_ttls) if values else None)
        if rcode == 'NOERROR' and values:
            result.update(ok=True, error_kind=None, message='')
            break
        # 'refused' already means an ICMP or TCP refusal: a REFUSED answer gets its own word.
        kind = {'NOERROR': 'no_answer', 'REFUSED': 'dns_refused'}.get(rcode, rcode.lower())
        result.update(error_kind=kind,
                      message='%s answered %s%s' % (nameserver, rcode, '' if values or rcode != 'NOERROR' else ' with no %s record' % qtype))
        if rcode in ('NXDOMAIN', 'NOERROR'):
            break  # an authoritative "no": asking the next server would not change it
    result['latency_ms'] = int((time.time() - started) * 1000)
    return result
