# -*- coding: utf-8 -*-
"""The fake edge's TLS and QUIC servers, run inside the edge namespace by the lab.

* TCP 7844: TLS with the certificate of h2.cftunnel.com (ALPN h2 or http/1.1), like cloudflared's http2 transport.
* TCP 443: TLS chosen by SNI among api.cloudflare.com, api.fed.cloudflare.com, update.argotunnel.com and
  update.cloudflare.com;
  answers one HTTP/1.1 request with a small JSON body naming the certificate it used.
* UDP 7844: a real QUIC server (aioquic) with ALPN ``argotunnel`` and the certificate of quic.cftunnel.com.
  UDP needs one socket per address: a wildcard socket would answer from the
  wrong source address and the client would drop the reply.

Every accepted connection and completed QUIC handshake is appended to a
JSON-lines log, so a test can prove which server a client reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted

TUNNEL_NAME = 'h2.cftunnel.com'
QUIC_NAME = 'quic.cftunnel.com'
HTTPS_NAMES = ('api.cloudflare.com', 'api.fed.cloudflare.com', 'update.argotunnel.com', 'update.cloudflare.com')


class Log:
    """Append-only JSON-lines log of what clients did."""

    def __init__(self, path):
        self.path = path

    def __call__(self, **entry):
        entry['t'] = time.time()
        with open(self.path, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(entry) + '\n')


def _context(certs, name, alpn):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(os.path.join(certs, name + '.pem'), os.path.join(certs, name + '.key'))
    context.set_alpn_protocols(alpn)
    return context


def _https_context(certs):
    """One listening context; the SNI callback swaps in the certificate of the name asked for."""
    contexts = {name: _context(certs, name, ['http/1.1']) for name in HTTPS_NAMES}
    default = _context(certs, HTTPS_NAMES[0], ['http/1.1'])

    def choose(sslobj, server_name, _context_in_use):
        if server_name in contexts:
            sslobj.context = contexts[server_name]
    default.sni_callback = choose
    names = {id(ctx): name for name, ctx in contexts.items()}
    names[id(default)] = HTTPS_NAMES[0]
    return default, names


def _handler(port, names, log):
    async def handle(reader, writer):
        sslobj = writer.get_extra_info('ssl_object')
        name = names.get(id(sslobj.context), '?') if sslobj else '?'
        peer, local = writer.get_extra_info('peername'), writer.get_extra_info('sockname')
        log(kind='tls', port=port, local=local[0], peer=peer[0], name=name, alpn=sslobj.selected_alpn_protocol() if sslobj else None)
        try:
            head = await asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), timeout=5)
            if head.split(b' ', 1)[0] in (b'GET', b'HEAD', b'POST'):
                body = json.dumps({'server': name, 'port': port, 'address': local[0]}).encode()
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n'
                             b'Connection: close\r\n\r\n%s' % (len(body), body))
                await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
    return handle


async def run(args):
    log = Log(args.log)
    tunnel = _context(args.certs, TUNNEL_NAME, ['h2', 'http/1.1'])
    https, names = _https_context(args.certs)
    names[id(tunnel)] = TUNNEL_NAME
    # TCP answers from the address it was reached on, so wildcard listeners serve every edge address.
    await asyncio.start_server(_handler(7844, names, log), host=['0.0.0.0', '::'], port=7844, ssl=tunnel)
    await asyncio.start_server(_handler(443, names, log), host=['0.0.0.0', '::'], port=443, ssl=https)

    configuration = QuicConfiguration(is_client=False, alpn_protocols=['argotunnel'])
    configuration.load_cert_chain(os.path.join(args.certs, QUIC_NAME + '.pem'), os.path.join(args.certs, QUIC_NAME + '.key'))

    def protocol_for(address):
        class Protocol(QuicConnectionProtocol):
            """Logs each completed handshake; the probe closes the connection itself."""

            def quic_event_received(self, event):
                if isinstance(event, HandshakeCompleted):
                    log(kind='quic', port=7844, local=address, alpn=event.alpn_protocol, name=QUIC_NAME)
        return Protocol

    for address in args.quic_listen:
        await serve(address, 7844, configuration=configuration, create_protocol=protocol_for(address))
    print(json.dumps({'ready': True, 'pid': os.getpid(), 'quic_sockets': len(args.quic_listen)}), flush=True)
    await asyncio.Event().wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--certs', required=True, help='directory with NAME.pem (chain) and NAME.key')
    parser.add_argument('--quic-listen', action='append', default=[], help='address for a QUIC socket (repeatable)')
    parser.add_argument('--log', required=True, help='JSON-lines connection log')
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
