# -*- coding: utf-8 -*-
"""A real QUIC server (aioquic, ALPN ``argotunnel``) on loopback, and a UDP relay in front of it that loses on purpose.

The relay stands for a path: it forwards client datagrams to the server
and answers back, but drops datagrams larger than ``max_size`` (an MTU
black hole) or every Initial after the first of a flow (a middlebox that
passes one datagram per new flow), so the probe's QUIC check can be
judged by code nobody here wrote without a lab.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import trustme
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted


class QuicServer:
    """aioquic on 127.0.0.1 and ::1 (one port each) in a thread of its own; records completed handshakes."""

    def __init__(self, directory, alpn='argotunnel'):
        ca = trustme.CA()
        cert = ca.issue_cert('quic.cftunnel.com')
        self.cert, self.key = directory + '/quic.pem', directory + '/quic.key'
        cert.private_key_and_cert_chain_pem.write_to_path(self.cert)
        cert.private_key_pem.write_to_path(self.key)
        self.alpn = alpn
        self.handshakes = []
        self.ports = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers = []

    def start(self):
        self.thread.start()
        for family, host in (('ipv4', '127.0.0.1'), ('ipv6', '::1')):
            port = _free_udp_port(host)
            asyncio.run_coroutine_threadsafe(self._serve(host, port), self.loop).result(10)
            self.ports[family] = (host, port)
        return self

    async def _serve(self, host, port):
        configuration = QuicConfiguration(is_client=False, alpn_protocols=[self.alpn])
        configuration.load_cert_chain(self.cert, self.key)
        handshakes = self.handshakes

        class Protocol(QuicConnectionProtocol):
            def quic_event_received(self, event):
                if isinstance(event, HandshakeCompleted):
                    handshakes.append(event.alpn_protocol)
        self.servers.append(await serve(host, port, configuration=configuration, create_protocol=Protocol))

    def stop(self):
        for server in self.servers:
            self.loop.call_soon_threadsafe(server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _free_udp_port(host):
    sock = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class LossyRelay:
    """A UDP relay on loopback in front of ``upstream``: one upstream socket per client flow, like a NAT."""

    def __init__(self, upstream, max_size=None, first_initial_only=False, only_size=None):
        self.upstream = upstream
        self.max_size = max_size
        self.only_size = only_size
        self.first_initial_only = first_initial_only
        self.family = socket.AF_INET6 if ':' in upstream[0] else socket.AF_INET
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self.sock.bind((upstream[0], 0))
        self.address = self.sock.getsockname()[:2]
        self.flows = {}
        self.seen = {}  # client flow -> Initials passed
        self.dropped = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _lose(self, client, data):
        if self.max_size is not None and len(data) > self.max_size:
            return True
        if self.only_size is not None and len(data) != self.only_size:
            return True
        if self.first_initial_only and data[:1] and data[0] & 0xF0 == 0xC0:  # a v1 long-header Initial
            self.seen[client] = self.seen.get(client, 0) + 1
            return self.seen[client] > 1
        return False

    def _run(self):
        import select
        while not self.stopping:
            sockets = [self.sock] + list(self.flows.values())
            for ready in select.select(sockets, [], [], 0.05)[0]:
                data, source = ready.recvfrom(65535)
                if ready is self.sock:
                    client = source[:2]
                    if self._lose(client, data):
                        self.dropped.append(len(data))
                        continue
                    if client not in self.flows:
                        flow = socket.socket(self.family, socket.SOCK_DGRAM)
                        flow.connect(self.upstream)
                        self.flows[client] = flow
                    self.flows[client].send(data)
                else:
                    client = next(c for c, s in self.flows.items() if s is ready)
                    self.sock.sendto(data, client)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        for flow in self.flows.values():
            flow.close()
        self.sock.close()
