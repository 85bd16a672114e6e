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

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract, probe_report, quic_initial, reachability
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.probe_options import (
    PROBE_ARGUMENT_SPEC, validate_probe_params)

BOTH_FAMILIES = list(egress_contract.FAMILIES)


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
    return {'4': ['ipv4'], '6': ['ipv6']}.get(ip_version, BOTH_FAMILIES)


# The order the Windows module sends the attempts in: cloudflared's own flight at once, the two smaller ones
# (reachability.quic_attempts) only when it is unanswered after SIZE_CHECK_AFTER of the timeout.
ATTEMPT_ORDER = ('cloudflared', 'single', 'small')


def prepare(params, build_attempts=reachability.quic_attempts):
    """The arguments of the Windows module: targets with their QUIC attempts (sealed datagrams), and the DNS questions."""
    targets, questions = probe_report.probe_work(params, candidate_families(params['ip_version']))
    for index, target in enumerate(targets):
        target['id'] = index
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
        'ip_version': params['ip_version'],
        'size_check_after': reachability.SIZE_CHECK_AFTER,
    }


def read_attempts(target, raw, timeout):
    """``(ok, error_kind, message)`` of a QUIC row: the datagrams each attempt got back, read as probe_quic reads them."""
    answers = raw.get('answers') or {}
    main, acked, outcomes = None, False, {}
    for attempt in target['attempts']:
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


def _row(target, raw, timeout):
    """A module result row, with the QUIC answer (base64 datagram) read on the controller."""
    ok, error_kind, message = raw['ok'], raw.get('error_kind'), raw.get('message', '')
    extra = {}
    if raw['check'] == 'quic' and target.get('attempts'):
        ok, error_kind, message = read_attempts(target, raw, timeout)
        first = base64.b64decode(target['attempts'][0]['datagrams'][0])
        extra = {'initial_size': len(first), 'initials': len(target['attempts'][0]['datagrams'])}
    server_name = target['server_name'] if raw['check'] in ('tls', 'https', 'quic') else None
    row = {'hostname': target['hostname'], 'purpose': target['purpose'], 'address': target['address'],
           'family': target['family'], 'port': target['port'], 'protocol': target['protocol'], 'check': raw['check'],
           'server_name': server_name, 'ok': ok, 'error_kind': None if ok else error_kind, 'message': message,
           'latency_ms': int(raw.get('latency_ms') or 0)}
    row.update(extra)
    return row


def report(params, prepared, module_result):
    """edge_probe's return value from what the Windows module measured."""
    families = [f for f in module_result.get('families') or BOTH_FAMILIES if f in candidate_families(params['ip_version'])]
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
