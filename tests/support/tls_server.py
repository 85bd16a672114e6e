# -*- coding: utf-8 -*-
"""A TLS server on loopback (Python's ssl, OpenSSL) and a TCP relay in front of it that loses large ClientHellos.

The server completes every handshake it is offered with the certificate
chain it was given; OpenSSL 3.0 has no ML-KEM, so cloudflared's post-quantum
hello gets a HelloRetryRequest for P-256, as from a TLS 1.3 server without
post-quantum groups. The relay stands in for a path that loses the large
segments of a hello: it forwards a connection's bytes unless its first TLS
record is longer than ``max_record``, which it swallows without a word (the
lab's ``tls-size`` fault does the same with real packets).
"""

from __future__ import annotations

import socket
import ssl
import threading


class TlsServer:
    """TLS on 127.0.0.1 and ::1, one thread per connection."""

    def __init__(self, cert_file, key_file):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.listeners = {}
        self.handshakes = 0
        self.stopping = False
        for family, host in (('ipv4', '127.0.0.1'), ('ipv6', '::1')):
            sock = socket.socket(socket.AF_INET6 if family == 'ipv6' else socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sock.listen(64)
            sock.settimeout(0.2)
            self.listeners[family] = sock
        self.ports = {family: sock.getsockname()[:2] for family, sock in self.listeners.items()}
        self.threads = [threading.Thread(target=self._accept, args=(sock,), daemon=True) for sock in self.listeners.values()]

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def _accept(self, listener):
        while not self.stopping:
            try:
                conn, _peer = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(5)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.handshakes += 1
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopping = True
        for thread in self.threads:
            thread.join(2)
        for sock in self.listeners.values():
            sock.close()


class HelloSizeRelay:
    """A TCP relay on loopback in front of ``upstream`` that swallows connections whose first record is too long."""

    def __init__(self, upstream, max_record):
        self.upstream = upstream
        self.max_record = max_record
        self.swallowed = []  # sizes of the first records swallowed
        self.family = socket.AF_INET6 if ':' in upstream[0] else socket.AF_INET
        self.listener = socket.socket(self.family, socket.SOCK_STREAM)
        self.listener.bind((upstream[0], 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.address = self.listener.getsockname()[:2]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _accept(self):
        while not self.stopping:
            try:
                client, _peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client):
        client.settimeout(5)
        try:
            head = b''
            while len(head) < 5:
                chunk = client.recv(5 - len(head))
                if not chunk:
                    return
                head += chunk
            length = 5 + int.from_bytes(head[3:5], 'big')
            if length > self.max_record:
                self.swallowed.append(length)
                while client.recv(65536):  # lost on the way: the server never hears of it
                    pass
                return
            server = socket.create_connection(self.upstream, timeout=5)
            server.sendall(head)
            pumps = [threading.Thread(target=self._pump, args=(a, b), daemon=True) for a, b in ((client, server), (server, client))]
            for pump in pumps:
                pump.start()
            for pump in pumps:
                pump.join(6)
            server.close()
        except OSError:
            pass
        finally:
            client.close()

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
        except OSError:
            return

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        self.listener.close()
