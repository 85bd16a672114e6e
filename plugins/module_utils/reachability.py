# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What edge_probe does on a managed host, as small functions of plain data.

Targets come from the egress plan (or are given explicitly); every probe
runs in its own thread with one deadline, so the wall time is about one
timeout whatever the number of targets. Every failure is classified:
``timeout`` (a silent drop), ``refused`` and ``unreachable`` (an active
rejection: TCP RST, ICMP), ``blocked_locally`` (this host's own firewall),
``tls``/``tls_certificate`` (something answered, but not the edge),
``tls_size`` (TCP 7844 answers a short ClientHello but not cloudflared's
post-quantum one of about 1.4 KB), and QUIC's own ``quic_closed``/``quic_version``,
and ``quic_size``/``quic_multi_initial`` when only smaller or single datagrams
get through.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import selectors
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    dns_client, egress_contract, edge_trust, quic_initial, tls_hello)

CHECKS = ('dns', 'tcp', 'tls', 'quic', 'https')
REQUIREMENTS = ('any_tunnel', 'quic', 'http2', 'api', 'update', 'dns')
SOCKET_FAMILY = {'ipv4': socket.AF_INET, 'ipv6': socket.AF_INET6}
HTTPS_PORT = egress_contract.HTTPS_PORT


def _target(endpoint, address, family, protocol, checks, server_name):
    return {'hostname': endpoint['hostname'], 'purpose': endpoint['purpose'], 'address': address,
            'family': family, 'port': endpoint['port'], 'protocol': protocol, 'checks': checks,
            'server_name': server_name}


def _checks_for(endpoint, protocol, checks):
    if protocol == 'udp':
        # Only the tunnel speaks a protocol we can prove over UDP (QUIC).
        return ['quic'] if 'quic' in checks and endpoint['purpose'] == 'tunnel' else []
    wanted = ['tcp'] if 'tcp' in checks else []
    if endpoint['purpose'] == 'tunnel' and 'tls' in checks:
        wanted.append('tls')
    elif endpoint['purpose'] != 'tunnel' and endpoint['port'] == HTTPS_PORT and 'https' in checks:
        wanted.append('https')
    return wanted


def plan_targets(plan, checks, purposes, families, server_names):
    """One target per address, protocol and port of the plan's endpoints."""
    targets = []
    for endpoint in plan['endpoints']:
        if purposes and endpoint['purpose'] not in purposes:
            continue
        for protocol in endpoint['protocols']:
            wanted = _checks_for(endpoint, protocol, checks)
            if not wanted:
                continue
            if endpoint['purpose'] == 'tunnel':
                server_name = server_names.get(protocol) or endpoint.get('server_names', {}).get(protocol)
            else:
                server_name = server_names.get(endpoint['hostname']) or endpoint['hostname']
            for family in families:
                for address in endpoint.get(family, []):
                    targets.append(_target(endpoint, address, family, protocol, wanted, server_name))
    return targets


def explicit_targets(items):
    """Targets from the module's ``targets`` option (already validated)."""
    targets = []
    for item in items:
        check = item['check']
        endpoint = {'hostname': item.get('hostname') or item['address'], 'purpose': item.get('purpose') or 'extra',
                    'port': item['port']}
        protocol = 'udp' if check == 'quic' else 'tcp'
        checks = [check] if check in ('tcp', 'quic') else ['tcp', check]
        family = 'ipv6' if ':' in item['address'] else 'ipv4'
        targets.append(_target(endpoint, item['address'], family, protocol, checks, item.get('server_name')))
    return targets


def routable_families(addresses_by_family):
    """The families this host has a route for: connecting a UDP socket sends nothing but asks the routing table."""
    families = []
    for family in egress_contract.FAMILIES:
        addresses = addresses_by_family.get(family) or []
        if not addresses:
            continue
        sock = socket.socket(SOCKET_FAMILY[family], socket.SOCK_DGRAM)
        try:
            sock.connect((addresses[0], egress_contract.TUNNEL_PORT))
            families.append(family)
        except (socket.error, OSError):
            pass
        finally:
            sock.close()
    return families


def _result(target, check, ok, error_kind, message, started):
    """One row of the module's ``results``."""
    return {'hostname': target['hostname'], 'purpose': target['purpose'], 'address': target['address'],
            'family': target['family'], 'port': target['port'], 'protocol': target['protocol'], 'check': check,
            'server_name': target['server_name'] if check in ('tls', 'https', 'quic') else None,
            'ok': ok, 'error_kind': error_kind, 'message': message,
            'latency_ms': int(round((time.time() - started) * 1000))}


def tls_context(validate_certs, ca_path, extra_roots=None):
    """The client contexts of every handshake, by kind (see edge_trust.contexts): the tunnel's trust on 7844."""
    return edge_trust.contexts(validate_certs, ca_path, extra_roots)


def _context_for(contexts, check):
    """The ``tls`` check (the tunnel's TCP handshake) trusts what cloudflared trusts there; ``https`` the store."""
    if isinstance(contexts, dict):
        return contexts['tunnel' if check == 'tls' else 'https']
    return contexts


def probe_stream(target, timeout, context, deadline=None):
    """TCP connect, then (if asked) a TLS handshake on the same connection, by one deadline."""
    started = time.time()
    deadline = deadline or started + timeout
    results = []
    sock = socket.socket(SOCKET_FAMILY[target['family']], socket.SOCK_STREAM)
    try:
        sock.settimeout(max(deadline - started, 0.05))
        try:
            sock.connect((target['address'], target['port']))
        except (socket.error, socket.timeout, OSError) as exc:
            kind = dns_client.error_kind(exc)
            message = 'TCP %d: %s' % (target['port'], 'no answer within %gs (dropped?)' % timeout if kind == 'timeout' else exc)
            return [_result(target, check, False, kind, message if check == 'tcp' else 'no TCP connection: ' + message,
                            started) for check in target['checks']]
        if 'tcp' in target['checks']:
            results.append(_result(target, 'tcp', True, None, 'connected', started))
        for check in target['checks']:
            if check in ('tls', 'https'):
                row = _handshake(sock, target, check, _context_for(context, check), deadline, started)
                if check == 'tls' and row['ok']:
                    row = _with_cloudflared_hello(row, target, timeout, deadline)
                results.append(row)
    finally:
        sock.close()
    return results


def cloudflared_hello(target, deadline, hello=None):
    """Send cloudflared's own ClientHello (tls_hello) on a new TCP connection; ``(outcome, detail, size)``.

    ``outcome``: ``answered`` (a ServerHello or a HelloRetryRequest came back;
    ``detail`` says which), ``alert`` (the server refused the hello; detail:
    the alert), ``silent`` (nothing came back by the deadline), ``closed``
    (the connection ended without an answer) or ``error`` (no connection;
    detail: the socket error).
    """
    hello = hello or tls_hello.client_hello(target['server_name'] or egress_contract.TUNNEL_SERVER_NAMES['tcp'])
    sock = socket.socket(SOCKET_FAMILY[target['family']], socket.SOCK_STREAM)
    received = b''
    try:
        sock.settimeout(max(deadline - time.time(), 0.05))
        try:
            sock.connect((target['address'], target['port']))
        except (socket.error, OSError) as exc:
            return 'error', exc, len(hello)
        try:
            sock.sendall(hello)
            while True:
                sock.settimeout(max(deadline - time.time(), 0.001))
                chunk = sock.recv(4096)
                if not chunk:
                    return 'closed', None, len(hello)
                received += chunk
                answer = tls_hello.read_answer(received)
                if answer is None:
                    continue
                if answer['kind'] == 'alert':
                    return 'alert', answer['alert'], len(hello)
                if answer['kind'] == 'not_tls':
                    return 'closed', 'not a TLS answer', len(hello)
                return 'answered', answer['kind'], len(hello)
        except socket.timeout:
            return 'silent', None, len(hello)
        except (socket.error, OSError) as exc:
            if received or dns_client.error_kind(exc) == 'reset':
                return 'closed', str(exc), len(hello)
            return 'error', exc, len(hello)
    finally:
        sock.close()


def _with_cloudflared_hello(row, target, timeout, deadline):
    """The ``tls`` row after the first handshake passed: also cloudflared's large hello must be answered."""
    outcome, detail, size = cloudflared_hello(target, deadline)
    ok, error_kind, message = interpret_cloudflared_hello(outcome, detail, size, target, timeout)
    row = dict(row, ok=ok, error_kind=error_kind, hello_size=size)
    row['message'] = '%s; %s' % (row['message'], message) if ok else message
    return row


def interpret_cloudflared_hello(outcome, detail, size, target, timeout):
    """``(ok, error_kind, message)`` of cloudflared's ClientHello, sent after a short hello was answered.

    Because the short hello was answered on the same port, a silence is the
    hello's size (``tls_size``: a path MTU black hole, a middlebox that drops
    large or segmented hellos), not a closed port.
    """
    port = target['port']
    if outcome == 'answered':
        return True, None, "cloudflared's %d-byte post-quantum ClientHello answered (%s)" % (
            size, 'HelloRetryRequest' if detail == 'hello_retry_request' else 'ServerHello')
    if outcome == 'silent':
        return False, 'tls_size', (
            "TCP %d: packet size / path MTU: cloudflared's %d-byte post-quantum ClientHello got no answer within %gs, "
            "while a short ClientHello was answered on the same port: a hop drops the large TCP segments of that hello "
            "(an MTU black hole or a middlebox); cloudflared's HTTP/2 connection fails here" % (port, size, timeout))
    if outcome == 'alert':
        return False, 'tls', "TCP %d: the server refused cloudflared's %d-byte ClientHello: TLS %s" % (port, size, detail)
    if outcome == 'closed':
        return False, 'tls', ("TCP %d: the connection ended after cloudflared's %d-byte ClientHello without an answer%s, "
                              "while a short ClientHello was answered" % (port, size, ' (%s)' % detail if detail else ''))
    return False, dns_client.error_kind(detail), "TCP %d: cloudflared's ClientHello: no TCP connection: %s" % (port, detail)


def _handshake(sock, target, check, context, deadline, started):
    handshake_started = time.time()
    sock.settimeout(max(deadline - handshake_started, 0.05))
    try:
        tls = context.wrap_socket(sock, server_hostname=target['server_name'])
    except ssl.SSLCertVerificationError as exc:
        return _result(target, check, False, 'tls_certificate', 'certificate not valid for %s: %s'
                       % (target['server_name'], exc.verify_message or exc), handshake_started)
    except ssl.SSLError as exc:
        return _result(target, check, False, 'tls', 'TLS handshake failed: %s' % (exc.reason or exc), handshake_started)
    except (socket.error, socket.timeout, OSError) as exc:
        kind = dns_client.error_kind(exc)
        return _result(target, check, False, kind, 'TLS handshake: %s' % ('no answer (dropped?)' if kind == 'timeout' else exc),
                       handshake_started)
    version = tls.version()
    tls.close()
    return _result(target, check, True, None, '%s with SNI %s' % (version, target['server_name']), handshake_started)


# The share of the timeout cloudflared's own flight has alone; when it is still unanswered then, the two smaller
# attempts of quic_attempts() go out, so the whole check still ends by one timeout.
SIZE_CHECK_AFTER = 2.0 / 3


class _Attempt(object):
    """One QUIC connection attempt: its own socket and connection IDs, its datagrams, its answer."""

    def __init__(self, kind, target, built):
        self.kind = kind
        self.datagrams, self.dcid, self.scid = built
        self.answer = None    # the first answer that is not a bare ACK
        self.acked = False    # the server acknowledged part of the ClientHello
        self.error = None     # a socket error (refused, unreachable, blocked locally)
        self.sock = None
        try:
            self.sock = socket.socket(SOCKET_FAMILY[target['family']], socket.SOCK_DGRAM)
            # A connected UDP socket turns an ICMP port unreachable into ECONNREFUSED.
            self.sock.connect((target['address'], target['port']))
            for datagram in self.datagrams:
                self.sock.send(datagram)
        except (socket.error, OSError) as exc:
            self.error = exc

    @property
    def done(self):
        """Whether the exchange has ended - with an answer or with an error."""
        return self.answer is not None or self.error is not None

    def receive(self):
        """Read one datagram from the socket (the socket is ready) and decide whether it answers the probe."""
        try:
            data = self.sock.recv(65535)
        except (socket.error, OSError) as exc:
            self.error = exc
            return
        answer = quic_initial.read_answer(data, self.dcid, self.scid)
        if not answer['packet']:
            return  # not for us
        if answer['ack_only']:
            self.acked = True
            return
        self.answer = answer


def _readable(socks, timeout):
    """The sockets of ``socks`` with a datagram waiting, within ``timeout``.

    epoll/poll rather than select(): with hundreds of probes in flight the
    descriptors pass select()'s limit of 1024.
    """
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, dummy in selector.select(timeout)]


def quic_attempts(server_name, family):
    """``{kind: (datagrams, dcid, scid)}`` of the QUIC check: cloudflared's two first flights, and two smaller ones.

    ``cloudflared``: the tunnel's post-quantum ClientHello split over
    Initials of its size for the family (1232 / 1252 bytes); ``precheck``:
    the start-up pre-check's (1280 bytes, SNI probe.cftunnel.com); ``single``:
    one Initial of the tunnel's size (a short ClientHello); ``small``: one
    Initial of 1200 bytes, the least QUIC allows.
    """
    return {
        'cloudflared': quic_initial.cloudflared_datagrams(server_name, family),
        'precheck': quic_initial.precheck_datagrams(),
        'single': quic_initial.initial_datagrams(server_name, size=quic_initial.INITIAL_PAYLOAD[family]),
        'small': quic_initial.initial_datagrams(server_name),
    }


# The attempts that go out at once (cloudflared's own flights), and those sent only to explain a silence.
FIRST_ATTEMPTS = ('cloudflared', 'precheck')
LATER_ATTEMPTS = ('single', 'small')


def probe_quic(target, timeout, deadline=None, attempts=None):
    """cloudflared's first QUIC flights (tunnel and pre-check sizes), and when the tunnel's gets no answer, two
    smaller ones to tell why; by one deadline."""
    started = time.time()
    deadline = deadline or started + timeout
    built = attempts or quic_attempts(target['server_name'] or 'quic.cftunnel.com', target['family'])
    running = [_Attempt(kind, target, built[kind]) for kind in FIRST_ATTEMPTS if kind in built]
    main = running[0]
    first = len(running)
    check_at = started + (deadline - started) * SIZE_CHECK_AFTER
    try:
        while not all(a.done for a in running[:first]):
            now = time.time()
            if now >= deadline:
                break
            if now >= check_at and len(running) == first and not main.done:
                running += [_Attempt(kind, target, built[kind]) for kind in LATER_ATTEMPTS if kind in built]
            waiting = [a.sock for a in running if not a.done]
            wake = deadline if len(running) > first or main.done else check_at
            readable = _readable(waiting, max(wake - now, 0.001))
            for attempt in running:
                if attempt.sock in readable:
                    attempt.receive()
    finally:
        for attempt in running:
            if attempt.sock is not None:
                attempt.sock.close()
    outcomes = dict((a.kind, 'answered' if a.answer else ('error' if a.error else 'silent')) for a in running)
    ok, error_kind, message = interpret_quic_attempts(main.answer, main.error, main.acked, outcomes, target,
                                                      timeout, len(main.datagrams), len(main.datagrams[0]))
    row = _result(target, 'quic', ok, error_kind, message, started)
    row.update(initial_size=len(main.datagrams[0]), initials=len(main.datagrams),
               flights=flights(dict((a.kind, a.datagrams) for a in running), outcomes))
    return row


def flights(datagrams_by_kind, outcomes):
    """What each attempt of the QUIC check sent and got: ``[{flight, size, initials, answered}]``, in send order.

    ``answered`` is True (answered), False (silent or an error) - so the row
    says which datagram sizes pass, the pre-check's 1280 among them.
    """
    rows = []
    for kind in FIRST_ATTEMPTS + LATER_ATTEMPTS:
        if kind in outcomes and datagrams_by_kind.get(kind):
            rows.append({'flight': kind, 'size': len(datagrams_by_kind[kind][0]),
                         'initials': len(datagrams_by_kind[kind]), 'answered': outcomes[kind] == 'answered'})
    return rows


def _ip_packet(size, family):
    return size + (28 if family == 'ipv4' else 48)  # IP header (20 / 40) and UDP header (8)


def interpret_quic_attempts(answer, error, acked, outcomes, target, timeout, initials, size):
    """``(ok, error_kind, message)`` of the QUIC check from its attempts (see probe_quic).

    cloudflared's own flight decides; the smaller attempts only explain a
    silence: when one of them is answered, the port is open and what is lost
    is cloudflared's datagram size (a path MTU black hole, a size filter) or
    its second Initial (a middlebox that passes one datagram per flow).
    """
    port = target['port']
    if answer:
        ok, error_kind, message = interpret_quic_answer(answer)
        if ok and outcomes.get('precheck') in ('silent', 'error'):
            message += ('; but the pre-check\'s %d-byte Initials got no answer: cloudflared\'s start-up pre-check '
                        'reports QUIC as failed here although the tunnel\'s %d-byte ones pass'
                        % (quic_initial.PRECHECK_INITIAL_PAYLOAD, size))
        return ok, error_kind, message
    if error is not None:
        return False, dns_client.error_kind(error), 'UDP %d: %s' % (port, error)
    flight = '%d Initials of %d bytes' % (initials, size) if initials > 1 else 'a %d-byte Initial' % size
    if outcomes.get('single') == 'answered':
        return False, 'quic_multi_initial', (
            'UDP %d: cloudflared\'s post-quantum ClientHello in %s got no answer%s, while a single %d-byte Initial was '
            'answered: something on the path drops the second Initial of a connection; cloudflared\'s QUIC '
            'handshake fails here' % (port, flight, ' (the server acknowledged the first)' if acked else '', size))
    if outcomes.get('precheck') == 'answered':
        return False, 'quic_size', (
            'UDP %d: packet size: cloudflared\'s %d-byte UDP datagrams (%s) got no answer, while the pre-check\'s '
            '%d-byte ones were answered: the start-up pre-check passes, yet cloudflared\'s QUIC handshake fails here'
            % (port, size, flight, quic_initial.PRECHECK_INITIAL_PAYLOAD))
    if outcomes.get('small') == 'answered':
        return False, 'quic_size', (
            'UDP %d: packet size / path MTU: cloudflared\'s %d-byte UDP datagrams (%d-byte %s packets, %s) got no '
            'answer, while a %d-byte one was answered: a hop drops datagrams of %d bytes (an MTU black hole or a size '
            'filter); cloudflared\'s QUIC handshake fails here'
            % (port, size, _ip_packet(size, target['family']), 'IPv4' if target['family'] == 'ipv4' else 'IPv6',
               flight, quic_initial.MIN_INITIAL_DATAGRAM, size))
    return False, 'timeout', 'UDP %d: no QUIC answer within %gs (dropped?)' % (port, timeout)


def interpret_quic_answer(answer):
    """``(ok, error_kind, message)`` for a server's first answer (see quic_initial.read_answer)."""
    if answer['close']:
        return False, 'quic_closed', quic_initial.describe_close(answer['close'])
    if answer['packet'] == 'version_negotiation':
        return False, 'quic_version', 'the server does not speak QUIC version 1'
    if answer['server_hello'] or answer['packet'] in ('retry', 'handshake'):
        return True, None, 'QUIC handshake answered (%s, ALPN accepted)' % answer['packet']
    return True, None, 'a QUIC %s packet came back' % answer['packet']


def run_probes(targets, timeout, concurrency, context, dns_job=None):
    """Every probe at once (at most ``concurrency`` threads); returns (results, dns job's value).

    The probes that fit in the first round share one deadline, so starting
    hundreds of threads does not stretch the run past one timeout; a probe
    that has to wait for a free thread gets its own full timeout.
    """
    jobs = []
    workers = max(1, min(concurrency, len(targets) + (1 if dns_job else 0)))
    deadline = time.time() + timeout
    with ThreadPoolExecutor(max_workers=workers) as pool:
        dns_future = pool.submit(dns_job) if dns_job else None
        for index, target in enumerate(targets):
            shared = deadline if index + (1 if dns_job else 0) < workers else None
            if target['protocol'] == 'udp':
                jobs.append(pool.submit(probe_quic, target, timeout, shared))
            else:
                jobs.append(pool.submit(probe_stream, target, timeout, context, shared))
        results = []
        for job in jobs:
            value = job.result()
            results.extend(value if isinstance(value, list) else [value])
        return results, dns_future.result() if dns_future else None
