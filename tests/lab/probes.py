# -*- coding: utf-8 -*-
"""Client probes run INSIDE a lab host; each prints one JSON object.

Standard library only (the host's own python3 runs it), except ``quic``,
which imports aioquic and so runs with the lab's Python::

    probes.py resolve NAME [--family 4|6]
    probes.py connect ADDRESS PORT [--udp]
    probes.py tls ADDRESS PORT SERVER_NAME --ca CA [--alpn P] [--http]
    probes.py quic ADDRESS PORT SERVER_NAME --ca CA [--alpn argotunnel]

The result says ``ok`` and, when not, an ``error`` class a test can assert
on: timeout (a silent drop), refused (a reset or ICMP port unreachable),
unreachable (ICMP host/net unreachable or no route), prohibited (ICMPv6
administratively prohibited), denied (this host's firewall said no), certificate, alpn, tls, closed, or the resolver's error name.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import ssl
import sys
import time


def classify(exc):
    """The error class of an exception, as the module docstring lists them."""
    if isinstance(exc, socket.gaierror):
        names = {socket.EAI_NONAME: 'nxdomain', socket.EAI_AGAIN: 'temporary', socket.EAI_FAIL: 'failure'}
        return names.get(exc.errno, 'gai-%s' % exc.errno)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return 'timeout'
    if isinstance(exc, ConnectionRefusedError):
        return 'refused'
    if isinstance(exc, ConnectionResetError):
        return 'reset'
    if isinstance(exc, ssl.SSLCertVerificationError):
        return 'certificate'
    if isinstance(exc, ssl.SSLError):
        return 'tls'
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return 'unreachable'
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return 'prohibited'  # ICMPv6 administratively prohibited, from a router on the path
    if isinstance(exc, OSError) and exc.errno == errno.EPERM:
        return 'denied'  # this host's own firewall dropped the packet on its way out
    return 'error'


def _family(address):
    return socket.AF_INET6 if ':' in address else socket.AF_INET


def resolve(args):
    family = {'4': socket.AF_INET, '6': socket.AF_INET6}.get(args.family, socket.AF_UNSPEC)
    infos = socket.getaddrinfo(args.name, None, family, socket.SOCK_STREAM)
    return {'addresses': sorted({info[4][0] for info in infos})}


def connect(args):
    if args.udp:
        with socket.socket(_family(args.address), socket.SOCK_DGRAM) as sock:
            sock.settimeout(args.timeout)
            sock.connect((args.address, args.port))
            sock.send(b'tunnelwall lab probe')
            # Only an answer (or an ICMP error) proves anything about UDP.
            return {'reply': len(sock.recv(2048))}
    with socket.create_connection((args.address, args.port), timeout=args.timeout):
        return {}


def tls(args):
    context = ssl.create_default_context(cafile=args.ca)
    if args.alpn:
        context.set_alpn_protocols([args.alpn])
    with socket.create_connection((args.address, args.port), timeout=args.timeout) as raw:
        with context.wrap_socket(raw, server_hostname=args.server_name) as conn:
            cert = conn.getpeercert()
            result = {'version': conn.version(), 'alpn': conn.selected_alpn_protocol(),
                      'cert_names': sorted(v for k, v in cert.get('subjectAltName', ()) if k == 'DNS')}
            if args.http:
                conn.sendall(b'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' % args.server_name.encode())
                data = b''
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                head, _blank, body = data.partition(b'\r\n\r\n')
                result['status'] = int(head.split(b' ')[1])
                result['body'] = json.loads(body or b'null')
            return result


def quic(args):
    """A QUIC handshake over a connected UDP socket, so ICMP errors surface at once as errors."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted

    configuration = QuicConfiguration(is_client=True, alpn_protocols=[args.alpn], server_name=args.server_name)
    configuration.load_verify_locations(args.ca)
    connection = QuicConnection(configuration=configuration)
    deadline = time.monotonic() + args.timeout
    with socket.socket(_family(args.address), socket.SOCK_DGRAM) as sock:
        sock.connect((args.address, args.port))
        peer = sock.getpeername()
        connection.connect(peer, now=time.time())
        while True:
            for data, _addr in connection.datagrams_to_send(now=time.time()):
                sock.send(data)
            event = connection.next_event()
            while event is not None:
                if isinstance(event, HandshakeCompleted):
                    connection.close(error_code=0, reason_phrase='probe done')
                    for data, _addr in connection.datagrams_to_send(now=time.time()):
                        sock.send(data)
                    return {'alpn': event.alpn_protocol, 'version': 'QUIC'}
                if isinstance(event, ConnectionTerminated):
                    # QUIC carries TLS alerts as error code 0x100 + alert (RFC 9001, 4.8).
                    kind = {0x100 + 42: 'certificate', 0x100 + 45: 'certificate', 0x100 + 46: 'certificate',
                            0x100 + 48: 'certificate', 0x100 + 120: 'alpn'}.get(event.error_code, 'closed')
                    raise _Closed('connection closed: code 0x%x %s' % (event.error_code, event.reason_phrase or ''), kind)
                event = connection.next_event()
            now = time.monotonic()
            if now >= deadline:
                raise socket.timeout('no QUIC handshake in %.1f s' % args.timeout)
            timer = connection.get_timer()
            wait = deadline - now
            if timer is not None:
                wait = min(wait, max(0.0, timer - time.time()))
            sock.settimeout(max(wait, 0.001))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                if timer is not None and time.time() >= timer:
                    connection.handle_timer(now=time.time())
                continue
            connection.receive_datagram(data, peer, now=time.time())


class _Closed(Exception):
    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--timeout', type=float, default=2.0)
    sub = parser.add_subparsers(dest='probe', required=True)
    p = sub.add_parser('resolve')
    p.add_argument('name')
    p.add_argument('--family', choices=('4', '6', 'any'), default='any')
    p.add_argument('--timeout', type=float, default=2.0)
    p = sub.add_parser('connect')
    p.add_argument('address')
    p.add_argument('port', type=int)
    p.add_argument('--udp', action='store_true')
    p.add_argument('--timeout', type=float, default=2.0)
    for name in ('tls', 'quic'):
        p = sub.add_parser(name)
        p.add_argument('address')
        p.add_argument('port', type=int)
        p.add_argument('server_name')
        p.add_argument('--ca', required=True)
        p.add_argument('--alpn', default='argotunnel' if name == 'quic' else None)
        p.add_argument('--http', action='store_true')
        p.add_argument('--timeout', type=float, default=2.0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        result = dict(ok=True, **globals()[args.probe](args))
    except _Closed as exc:
        result = {'ok': False, 'error': exc.kind, 'detail': str(exc)}
    except (OSError, ValueError) as exc:
        result = {'ok': False, 'error': classify(exc), 'detail': '%s: %s' % (type(exc).__name__, exc)}
    result['elapsed'] = round(time.monotonic() - started, 3)
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
