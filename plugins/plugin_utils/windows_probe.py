# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's half of win_edge_probe.

PowerShell 5.1 has no AES-GCM, and QUIC Initial protection needs it. So the
controller builds every Initial datagram (the same code edge_probe runs on
POSIX hosts), the Windows module only sends bytes and returns the bytes
that came back, and the controller reads them and writes the report with
the same functions as edge_probe. Windows does I/O; Python does protocol.
"""

from __future__ import annotations

import base64
import ssl

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    edge_trust, egress_contract, probe_report, quic_initial, reachability, tls_hello)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.probe_options import (
    PROBE_ARGUMENT_SPEC, validate_probe_params)


def validate(args):
    """``(params, problem)``: the task's arguments checked as edge_probe checks them, before anything is sent."""
    validation = ArgumentSpecValidator(PROBE_ARGUMENT_SPEC, mutually_exclusive=[('plan', 'targets')],
                                       required_one_of=[('plan', 'targets')]).validate(args)
    if validation.error_messages:
        return None, '; '.join(validation.error_messages)
    params = validation.validated_parameters
    return params, validate_probe_params(params)


def candidate_families(ip_version):
    """Families to prepare targets for; with ``auto`` the host decides which it has a route for."""
    return {'4': ['ipv4'], '6': ['ipv6']}.get(ip_version, list(egress_contract.FAMILIES))


# The order the Windows module sends the attempts in: cloudflared's own flights (the tunnel's and the pre-check's,
# reachability.FIRST_ATTEMPTS) at once, the two smaller ones only when the tunnel's is unanswered after
# SIZE_CHECK_AFTER of the timeout.
ATTEMPT_ORDER = reachability.FIRST_ATTEMPTS + reachability.LATER_ATTEMPTS


def _der_base64(pem_bundle):
    """The certificates of a PEM bundle, each as base64 DER (what .NET's X509Certificate2 reads)."""
    marker = '-----END CERTIFICATE-----'
    blocks = [block + marker for block in pem_bundle.split(marker) if 'BEGIN CERTIFICATE' in block]
    return [base64.b64encode(ssl.PEM_cert_to_DER_cert(block.strip())).decode('ascii') for block in blocks]


def prepare(params, build_attempts=reachability.quic_attempts, tunnel_roots=None):
    """The arguments of the Windows module: targets with their QUIC attempts (sealed datagrams) and cloudflared's
    TCP ClientHello, the roots cloudflared adds on the tunnel port, and the DNS questions.

    ``tunnel_roots`` (PEM) replaces the three Cloudflare roots: the tests' seam, as in edge_trust.tunnel_context.
    """
    targets, questions = probe_report.probe_work(params, candidate_families(params['ip_version']))
    for index, target in enumerate(targets):
        target['id'] = index
        if 'tls' in target['checks']:
            hello = tls_hello.client_hello(target['server_name'] or egress_contract.TUNNEL_SERVER_NAMES['tcp'])
            target['hello'] = base64.b64encode(hello).decode('ascii')
        if target['protocol'] == 'udp':
            built = build_attempts(target['server_name'] or 'quic.cftunnel.com', target['family'])
            target['attempts'] = [
                {'kind': kind, 'datagrams': [base64.b64encode(d).decode('ascii') for d in built[kind][0]],
                 'dcid': built[kind][1].hex(), 'scid': built[kind][2].hex()} for kind in ATTEMPT_ORDER]
    return {
        'targets': targets,
        'dns_questions': [{'name': name, 'type': qtype} for name, qtype in questions],
        'timeout_ms': int(params['timeout'] * 1000),
        'concurrency': params['concurrency'],
        'validate_certs': params['validate_certs'],
        'ca_path': params['ca_path'],
        'tunnel_roots': _der_base64(edge_trust.cloudflare_roots_pem() if tunnel_roots is None else tunnel_roots),
        'ip_version': params['ip_version'],
        'size_check_after': reachability.SIZE_CHECK_AFTER,
        'first_attempts': len(reachability.FIRST_ATTEMPTS),
    }


def read_attempts(target, raw, timeout):
    """``(ok, error_kind, message)`` of a QUIC row: the datagrams each attempt got back, read as probe_quic reads them."""
    answers = raw.get('answers') or {}
    main, acked, outcomes = None, False, {}
    for attempt in target['attempts']:
        if attempt['kind'] not in answers and attempt['kind'] != 'cloudflared':
            continue  # not sent (the module lists every attempt it sent, answered or not)
        answer = None
        for datagram in answers.get(attempt['kind']) or []:
            read = quic_initial.read_answer(base64.b64decode(datagram), bytes.fromhex(attempt['dcid']),
                                            bytes.fromhex(attempt['scid']))
            if read['packet'] and read['ack_only']:
                acked = acked or attempt['kind'] == 'cloudflared'
            elif read['packet']:
                answer = read
                break
        outcomes[attempt['kind']] = 'answered' if answer else 'silent'
        if attempt['kind'] == 'cloudflared':
            main = answer
    if main is None and answers.get('cloudflared') and not acked:
        return False, 'quic_not_ours', 'a datagram came back, but not a QUIC answer to our Initial'
    if main is None and not raw['ok'] and raw.get('error_kind') not in (None, 'timeout'):
        return False, raw['error_kind'], raw.get('message', '')
    first = target['attempts'][0]
    datagrams = [base64.b64decode(d) for d in first['datagrams']]
    ok, kind, message = reachability.interpret_quic_attempts(main, None, acked, outcomes, target, timeout,
                                                             len(datagrams), len(datagrams[0]))
    if kind == 'timeout':
        message = raw.get('message') or message
    return ok, kind, message


def quic_flights(target, raw):
    """The row's ``flights`` (reachability.flights) from the attempts the Windows module sent."""
    sent = raw.get('answers') or {}
    datagrams = dict((a['kind'], a['datagrams']) for a in target['attempts'] if a['kind'] in sent)
    outcomes = dict((kind, 'silent') for kind in datagrams)
    for attempt in target['attempts']:
        for datagram in sent.get(attempt['kind']) or []:
            read = quic_initial.read_answer(base64.b64decode(datagram), bytes.fromhex(attempt['dcid']),
                                            bytes.fromhex(attempt['scid']))
            if read['packet'] and not read['ack_only']:
                outcomes[attempt['kind']] = 'answered'
    return reachability.flights(dict((kind, [base64.b64decode(d) for d in value]) for kind, value in datagrams.items()),
                                outcomes)


def read_hello(hello, target, timeout):
    """``(ok, error_kind, message)`` of cloudflared's TCP ClientHello from what the Windows module got back."""
    outcome, size = hello.get('outcome'), int(hello.get('size') or 0)
    if outcome == 'error':
        return False, hello.get('error_kind') or 'error', "TCP %d: cloudflared's ClientHello: no TCP connection: %s" % (
            target['port'], hello.get('message') or '')
    detail = hello.get('message')
    if outcome == 'answered':
        answer = tls_hello.read_answer(base64.b64decode(hello.get('answer') or ''))
        if answer is None or answer['kind'] == 'not_tls':
            outcome, detail = 'closed', 'not a TLS answer'
        elif answer['kind'] == 'alert':
            outcome, detail = 'alert', answer['alert']
        else:
            detail = answer['kind']
    return reachability.interpret_cloudflared_hello(outcome, detail, size, target, timeout)


def _row(target, raw, timeout):
    """A module result row, with the QUIC answer (base64 datagram) read on the controller."""
    ok, error_kind, message = raw['ok'], raw.get('error_kind'), raw.get('message', '')
    extra = {}
    if raw['check'] == 'quic' and target.get('attempts'):
        ok, error_kind, message = read_attempts(target, raw, timeout)
        first = base64.b64decode(target['attempts'][0]['datagrams'][0])
        extra = {'initial_size': len(first), 'initials': len(target['attempts'][0]['datagrams']),
                 'flights': quic_flights(target, raw)}
    if raw['check'] == 'tls' and ok and raw.get('hello'):
        hello_ok, error_kind, hello_message = read_hello(raw['hello'], target, timeout)
        extra = {'hello_size': int(raw['hello'].get('size') or 0)}
        message = '%s; %s' % (message, hello_message) if hello_ok else hello_message
        ok = hello_ok
    server_name = target['server_name'] if raw['check'] in ('tls', 'https', 'quic') else None
    row = {'hostname': target['hostname'], 'purpose': target['purpose'], 'address': target['address'],
           'family': target['family'], 'port': target['port'], 'protocol': target['protocol'], 'check': raw['check'],
           'server_name': server_name, 'ok': ok, 'error_kind': None if ok else error_kind, 'message': message,
           'latency_ms': int(raw.get('latency_ms') or 0)}
    row.update(extra)
    return row


def report(params, prepared, module_result):
    """edge_probe's return value from what the Windows module measured."""
    families = [f for f in module_result.get('families') or egress_contract.FAMILIES if f in candidate_families(params['ip_version'])]
    by_id = dict((t['id'], t) for t in prepared['targets'])
    results = [_row(by_id[raw['id']], raw, params['timeout']) for raw in module_result.get('results') or []
               if by_id[raw['id']]['family'] in families]
    dns = module_result.get('dns') or {}
    family_of = {'A': 'ipv4', 'AAAA': 'ipv6'}
    answers = [a for a in dns.get('answers') or [] if a['type'] in ('SRV', 'TXT') or family_of.get(a['type']) in families]
    for answer in answers:
        if answer['type'] == 'SRV':
            # JSON gives lists; the report compares SRV targets as tuples, like the POSIX client returns them.
            answer['answers'] = [tuple(a) for a in answer.get('answers') or []]
    return probe_report.report(params['require'], params['plan'], families, results,
                               dns.get('nameservers') or [], answers, bool(prepared['dns_questions']))
