# -*- coding: utf-8 -*-
"""edge_probe refuses a bad hand-written plan before it contacts anything.

The module runs in this process with AnsibleModule's real argument handling.
Every plan points at a real TCP and UDP listener on loopback: a refusal must
name the option and the value, and the listeners must have seen nothing.
"""

from __future__ import annotations

import copy
import socket

import pytest

from tests.support.module_runner import run_module


@pytest.fixture
def listeners():
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(('127.0.0.1', 0))
    tcp.listen(16)
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(('127.0.0.1', tcp.getsockname()[1]))
    udp.setblocking(False)
    yield tcp, udp
    tcp.close()
    udp.close()


def contacted(listeners):
    tcp, udp = listeners
    seen = []
    for sock, action in ((tcp, tcp.accept), (udp, lambda: udp.recv(65535))):
        try:
            action()
            seen.append(sock.type)
        except BlockingIOError:
            pass
    return seen


def good_plan(port):
    return {
        'version': 1, 'srv_names': ['_v2-origintunneld._tcp.argotunnel.com'],
        'endpoints': [{'hostname': 'region1.v2.argotunnel.com', 'purpose': 'tunnel', 'port': port,
                       'protocols': ['tcp', 'udp'],
                       'server_names': {'tcp': 'h2.cftunnel.com', 'udp': 'quic.cftunnel.com'},
                       'ipv4': ['127.0.0.1'], 'ipv6': []}],
    }


def endpoint_with(listen_port, changes):
    plan = good_plan(listen_port)
    for key, value in changes.items():
        if value is None:
            plan['endpoints'][0].pop(key)
        else:
            plan['endpoints'][0][key] = value
    return plan


CASES = [
    (dict(port=65536), "plan: endpoints[0] (region1.v2.argotunnel.com) has port=65536: expected an integer from 1 "
                       "to 65535"),
    (dict(port=True), 'has port=True: expected an integer'),
    (dict(port='7844'), "has port='7844': expected an integer"),
    (dict(server_names=None), 'has no server_names.tcp: a tunnel endpoint needs the name its tcp handshake sends'),
    (dict(server_names={'tcp': 'h2.cft\u00fcnnel.com', 'udp': 'quic.cftunnel.com'}),
     "has server_names.tcp='h2.cft\u00fcnnel.com': expected an ASCII host name"),
    (dict(ipv6=['fe80::1%lo']), "has ipv6='fe80::1%lo': an IPv6 zone id (%...) has no place"),
    (dict(ipv4=['2001:db8::1']), "has ipv4='2001:db8::1': expected an IPv4 address"),
    (dict(hostname='a..b'), "plan: endpoints[0].hostname='a..b': expected a host name"),
    (dict(hostname='region1.v2.argotunnel.com\n'), "endpoints[0].hostname='region1.v2.argotunnel.com\\n'"),
    (dict(protocols=['tcp', 'sctp']), "has protocols=['tcp', 'sctp']: expected a list of tcp, udp"),
    (dict(purpose='ssh'), "has purpose='ssh': expected one of tunnel, api, update, extra"),
]


@pytest.mark.parametrize('changes, message', CASES)
def test_bad_plan_is_refused_before_any_contact(listeners, changes, message):
    port = listeners[0].getsockname()[1]
    result = run_module('edge_probe', {'plan': endpoint_with(port, changes), 'timeout': 1})
    assert result.get('failed') is True, result
    assert message in result['msg']
    assert 'Traceback' not in str(result)
    assert contacted(listeners) == []


@pytest.mark.parametrize('target, message', [
    ({'port': 65536}, 'targets[0].port=65536: expected 1 to 65535'),
    ({'address': 'fe80::1%lo'}, "targets[0].address='fe80::1%lo': an IPv6 zone id"),
    ({'server_name': 'b\u00fccher.example'}, "targets[0].server_name='b\u00fccher.example': expected an ASCII host name"),
    ({'server_name': 'a..b'}, "targets[0].server_name='a..b': expected a host name"),
])
def test_bad_target_is_refused_before_any_contact(listeners, target, message):
    port = listeners[0].getsockname()[1]
    item = dict({'address': '127.0.0.1', 'port': port, 'check': 'tls', 'server_name': 'h2.cftunnel.com'}, **target)
    result = run_module('edge_probe', {'targets': [item], 'timeout': 1})
    assert result.get('failed') is True, result
    assert message in result['msg']
    assert contacted(listeners) == []


def test_the_good_plan_does_contact(listeners):
    """The listeners do see a probe that passes validation: the tests above could fail."""
    port = listeners[0].getsockname()[1]
    plan = good_plan(port)
    result = run_module('edge_probe', {'plan': plan, 'timeout': 0.5, 'checks': ['tcp', 'quic'],
                                       'require': [], 'ip_version': '4'})
    assert 'results' in result, result
    assert sorted(contacted(listeners)) == sorted([socket.SOCK_STREAM, socket.SOCK_DGRAM])
    assert copy.deepcopy(plan) == good_plan(port)
