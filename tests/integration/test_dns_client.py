# -*- coding: utf-8 -*-
"""The managed-host DNS client (module_utils/dns_client.py) against the real test DNS server."""

from __future__ import annotations

import time

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import dns_client

from tests.support import edge_zone

V2 = edge_zone.SRV_NAMES['global']


def ask(dns, name, qtype, nameservers=None, timeout=1.0):
    return dns_client.resolve(name, qtype, nameservers or [dns.address], timeout, port=dns.port)


def test_srv_answer_with_targets_and_ports(dns):
    dns.set(srv_port=7900)
    result = ask(dns, V2, 'SRV')
    assert result['ok'] and result['rcode'] == 'NOERROR' and result['ttl'] == 300
    assert result['answers'] == [(1, 1, 7900, 'region1.v2.argotunnel.com'), (1, 1, 7900, 'region2.v2.argotunnel.com')]


@pytest.mark.parametrize('qtype, family', [('A', 'A'), ('AAAA', 'AAAA')])
def test_addresses(dns, qtype, family):
    result = ask(dns, 'region2.v2.argotunnel.com', qtype)
    assert result['answers'] == edge_zone.lab_addresses('region2.v2.argotunnel.com')[family]


def test_ipv6_nameserver(dns):
    result = dns_client.resolve('api.cloudflare.com', 'A', ['::1'], 1.0, port=dns.ports['::1'])
    assert result['ok'] and result['nameserver'] == '::1'


@pytest.mark.parametrize('fault, kind', [('servfail', 'servfail'), ('nxdomain', 'nxdomain'), ('refused', 'dns_refused')])
def test_rcodes_are_findings(dns, fault, kind):
    dns.set(faults={V2: fault})
    result = ask(dns, V2, 'SRV')
    assert not result['ok'] and result['error_kind'] == kind


def test_silence_is_a_timeout_within_the_timeout(dns):
    dns.set(faults={'*': 'timeout'})
    started = time.monotonic()
    result = ask(dns, V2, 'SRV', timeout=0.5)
    assert result['error_kind'] == 'timeout' and time.monotonic() - started < 1.0


def test_next_nameserver_after_a_servfail(dns):
    dns.set(faults={V2: 'servfail'})
    result = dns_client.resolve(V2, 'SRV', ['127.0.0.1', '127.0.0.1'], 1.0, port=dns.port)
    assert not result['ok']
    assert sum(1 for q in dns.queries() if q['name'] == V2) == 2


def test_empty_answer_is_no_answer(dns):
    result = ask(dns, 'argotunnel.com', 'A')
    assert result['error_kind'] == 'no_answer' and result['rcode'] == 'NOERROR'


def test_resolv_conf_parsing(tmp_path):
    conf = tmp_path / 'resolv.conf'
    conf.write_text('# lab\nsearch example\nnameserver 198.51.100.53\nnameserver 2001:db8:e::53 # v6\n'
                    'nameserver fe80::1%eth0\nnameserver not-an-ip\noptions ndots:2\nnameserver 198.51.100.53\n')
    assert dns_client.read_resolv_conf(str(conf)) == ['198.51.100.53', '2001:db8:e::53', 'fe80::1']
    assert dns_client.read_resolv_conf(str(tmp_path / 'missing')) == []


def cname_records(ttl_cname=60, ttl_target=300):
    records = edge_zone.edge_records()
    records['alias.argotunnel.com'] = {'CNAME': 'region1.v2.argotunnel.com', 'ttl': ttl_cname}
    records['region1.v2.argotunnel.com']['ttl'] = ttl_target
    return records


def test_a_stray_reply_with_a_wrong_id_does_not_end_the_wait(dns):
    dns.set(faults={'api.cloudflare.com/A': 'stray'})
    result = ask(dns, 'api.cloudflare.com', 'A')
    assert result['ok'], result
    assert result['answers'] == edge_zone.lab_addresses('api.cloudflare.com')['A']
    # The stray datagram really was sent before the answer.
    assert [q['transport'] for q in dns.queries()] == ['udp-stray', 'udp']


def test_records_of_another_owner_are_not_answers(dns):
    dns.set(faults={'api.cloudflare.com/A': 'foreign_owner'})
    result = ask(dns, 'api.cloudflare.com', 'A')
    assert not result['ok'] and result['answers'] == [] and result['error_kind'] == 'no_answer'


def test_a_cname_chain_is_followed_with_its_smallest_ttl(dns):
    dns.set(records=cname_records(ttl_cname=60, ttl_target=300))
    result = ask(dns, 'alias.argotunnel.com', 'A')
    assert result['ok'] and result['answers'] == edge_zone.lab_addresses('region1.v2.argotunnel.com')['A']
    assert result['ttl'] == 60


@pytest.mark.parametrize('name', ['a..b', 'x' * 64 + '.argotunnel.com', '.', None, 'b\u00fccher..de', 42])
def test_a_name_that_cannot_be_asked_is_a_result_not_an_exception(dns, name):
    result = ask(dns, name, 'A')
    assert not result['ok'] and result['error_kind'] == 'invalid_name'
    assert repr(name) in result['message']
    assert dns.queries() == []


def test_txt_answer_and_the_state_of_each_outcome(dns):
    present = ask(dns, 'cfd-features.argotunnel.com', 'TXT')
    assert present['ok'] and present['answers'] == ['tunnelwall fake features']
    assert dns_client.answer_state(present) == 'ok'
    # Authoritative "no such name" and "no TXT here" are answers: cloudflared then uses its defaults.
    assert dns_client.answer_state(ask(dns, 'protocol-v2.argotunnel.com', 'TXT')) == 'absent'
    assert dns_client.answer_state(ask(dns, 'api.cloudflare.com', 'TXT')) == 'absent'
    for fault in ('timeout', 'servfail', 'refused'):
        dns.set(faults={'cfd-features.argotunnel.com/TXT': fault})
        blocked = ask(dns, 'cfd-features.argotunnel.com', 'TXT', timeout=0.3)
        assert (blocked['ok'], dns_client.answer_state(blocked)) == (False, 'blocked'), fault
