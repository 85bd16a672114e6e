# -*- coding: utf-8 -*-
"""A real, authoritative DNS server for the tests and the lab, on dnspython's wire format.

Serves UDP and TCP (and DNS-over-TLS when given a certificate) from a JSON
state file that it re-reads whenever it changes, so a test can switch
faults at run time without restarting it::

    {"zones": ["argotunnel.com", ...],
     "records": {"region1.v2.argotunnel.com": {"A": [...], "AAAA": [...], "ttl": 300}, ...},
     "faults": {"<name>" | "<name>/<TYPE>" | "*": "servfail" | "nxdomain" | "refused" | "timeout" | "spoof"
                | "stray" | "foreign_owner"},
     "delay_ms": 0}

A record node may hold ``"CNAME": "target"``: the answer is then the CNAME
(with the node's TTL) followed by the target's records, as an authoritative
server gives a chain inside its zone. ``stray`` sends, over UDP, first a reply
with a wrong query ID and then the right one; ``foreign_owner`` answers with
records whose owner is another name than the question's.

Every query is appended to a JSON-lines log (time, name, type, transport,
client), which is how tests prove that a cached lookup sent nothing.
Answers are delayed concurrently: ten queries delayed 50 ms all get their
answers after about 50 ms, as from a real far-away server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import struct
import sys
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

try:
    from tests.support.edge_zone import SPOOFED
except ImportError:  # run as a script from tests/support
    from edge_zone import SPOOFED


class Authority:
    """Answers queries from the state file; knows nothing of sockets."""

    def __init__(self, state_path, log_path):
        self.state_path = state_path
        self.log_path = log_path
        self._mtime = None
        self.state = {}

    def _reload(self):
        try:
            mtime = os.stat(self.state_path).st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._mtime:
            with open(self.state_path, encoding='utf-8') as handle:
                self.state = json.load(handle)
            self._mtime = mtime

    def _log(self, name, rdtype, transport, client):
        with open(self.log_path, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps({'t': time.time(), 'name': name, 'type': rdtype,
                                     'transport': transport, 'client': client}) + '\n')

    def _fault(self, name, rdtype):
        faults = self.state.get('faults', {})
        return faults.get('%s/%s' % (name, rdtype)) or faults.get(name) or faults.get('*')

    def _in_zone(self, name):
        return any(name == zone or name.endswith('.' + zone) for zone in self.state.get('zones', ()))

    @property
    def delay(self):
        # Re-read first: the answer to the first query after a change must already follow it.
        self._reload()
        return self.state.get('delay_ms', 0) / 1000.0

    def respond(self, wire, transport, client):
        """The response's wire format, or None to stay silent (a timeout)."""
        self._reload()
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # garbage on the wire gets no answer, like a real server
            return None
        if not query.question:
            return None
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self._log(name, rdtype, transport, client)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        fault = self._fault(name, rdtype)
        if fault == 'timeout':
            return None
        if fault in ('servfail', 'nxdomain', 'refused'):
            response.set_rcode({'servfail': dns.rcode.SERVFAIL, 'nxdomain': dns.rcode.NXDOMAIN,
                                'refused': dns.rcode.REFUSED}[fault])
            return response.to_wire()
        records = self.state.get('records', {})
        if not self._in_zone(name):
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.REFUSED)
        elif name not in records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            owner = question.name
            node = records[name]
            for dummy in range(8):  # a CNAME chain inside the zone, as an authoritative server answers it
                if 'CNAME' not in node or rdtype == 'CNAME':
                    break
                target = dns.name.from_text(node['CNAME'])
                response.answer.append(dns.rrset.from_text_list(
                    owner, node.get('ttl', 300), dns.rdataclass.IN, dns.rdatatype.CNAME, [target.to_text()]))
                owner, node = target, records.get(target.to_text(omit_final_dot=True).lower(), {})
            values = node.get(rdtype, [])
            if fault == 'spoof' and rdtype in SPOOFED:
                values = [SPOOFED[rdtype]]
            if fault == 'foreign_owner':
                owner = dns.name.from_text('elsewhere.' + name)
            if values:
                texts = [' '.join(str(p) for p in v) + ('.' if rdtype == 'SRV' else '') if isinstance(v, list)
                         else ('"%s"' % v if rdtype == 'TXT' else v) for v in values]
                response.answer.append(dns.rrset.from_text_list(
                    owner, node.get('ttl', 300), dns.rdataclass.IN, question.rdtype, texts))
        return response.to_wire()

    def stray(self, wire):
        """A copy of the reply with a wrong query ID when the question's fault is ``stray``, else None."""
        try:
            query = dns.message.from_wire(wire)
            question = query.question[0]
        except Exception:  # garbage: respond() stays silent as well
            return None
        name = question.name.to_text(omit_final_dot=True).lower()
        if self._fault(name, dns.rdatatype.to_text(question.rdtype)) != 'stray':
            return None
        reply = self.respond(wire, 'udp-stray', None)
        return struct.pack('!H', (struct.unpack('!H', reply[:2])[0] + 1) & 0xFFFF) + reply[2:] if reply else None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, authority):
        self.authority = authority
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        asyncio.ensure_future(self._answer(data, addr))

    async def _answer(self, data, addr):
        await asyncio.sleep(self.authority.delay)
        stray = self.authority.stray(data)
        if stray is not None:
            # A late answer to an earlier query, or a blind spoofing attempt: the client must keep waiting.
            self.transport.sendto(stray, addr)
            await asyncio.sleep(0.05)
        reply = self.authority.respond(data, 'udp', addr[0])
        if reply is not None:
            self.transport.sendto(reply, addr)


def _stream_handler(authority, transport):
    async def handle(reader, writer):
        client = writer.get_extra_info('peername')[0]
        try:
            while True:
                header = await reader.readexactly(2)
                data = await reader.readexactly(struct.unpack('!H', header)[0])
                await asyncio.sleep(authority.delay)
                reply = authority.respond(data, transport, client)
                if reply is None:
                    continue
                writer.write(struct.pack('!H', len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
    return handle


async def serve(args):
    authority = Authority(args.state, args.log)
    loop = asyncio.get_running_loop()
    ports = {}
    for host in args.listen:
        udp, dummy = await loop.create_datagram_endpoint(lambda: _Udp(authority), local_addr=(host, args.port))
        port = udp.get_extra_info('sockname')[1]
        await asyncio.start_server(_stream_handler(authority, 'tcp'), host, port)
        ports[host] = port
    tls_ports = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        for host in args.listen:
            server = await asyncio.start_server(_stream_handler(authority, 'tls'), host, args.tls_port, ssl=context)
            tls_ports[host] = server.sockets[0].getsockname()[1]
    print(json.dumps({'ready': True, 'ports': ports, 'tls_ports': tls_ports, 'pid': os.getpid()}), flush=True)
    await asyncio.Event().wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--listen', action='append', required=True, help='address to listen on (repeatable)')
    parser.add_argument('--port', type=int, default=53, help='UDP and TCP port (0: any free port)')
    parser.add_argument('--tls-port', type=int, default=853)
    parser.add_argument('--tls-cert')
    parser.add_argument('--tls-key')
    parser.add_argument('--state', required=True, help='JSON state file, re-read when it changes')
    parser.add_argument('--log', required=True, help='JSON-lines query log')
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
