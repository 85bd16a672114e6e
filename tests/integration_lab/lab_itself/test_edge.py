# -*- coding: utf-8 -*-
"""The fake edge as clients see it: DNS from the controller and from hosts, TLS with the right names, QUIC with ALPN argotunnel."""

from __future__ import annotations

import json
import os

import dns.rcode
import pytest

from tests.lab import config
from tests.support import edge_zone

# The lab's own behaviour, whatever ansible-core drives it: `make test` runs this once, in the latest venv
# (marker `once`, see the Makefile).
pytestmark = pytest.mark.once

RECORDS = edge_zone.edge_records('lab')


def query(lab, name, rdtype, server=None, tcp=False):
    return lab.query(name, rdtype, server, tcp)


def answers(response):
    return sorted(item.to_text() for rrset in response.answer for item in rrset)


@pytest.mark.parametrize('generation', sorted(edge_zone.SRV_NAMES))
def test_controller_gets_srv_for_every_generation(lab, generation):
    response = query(lab, edge_zone.SRV_NAMES[generation], 'SRV')
    assert response.rcode() == dns.rcode.NOERROR
    assert answers(response) == sorted('1 1 7844 %s.' % target for target in edge_zone.REGION_HOSTS[generation])


@pytest.mark.parametrize('server', [0, 1], ids=['ipv4', 'ipv6'])
@pytest.mark.parametrize('tcp', [False, True], ids=['udp', 'tcp'])
def test_controller_gets_a_and_aaaa_over_both_families_and_transports(lab, server, tcp):
    for name in ('region1.v2.argotunnel.com', 'us-region2.v2.argotunnel.com', 'api.cloudflare.com'):
        assert answers(query(lab, name, 'A', lab.nameservers[server], tcp)) == sorted(RECORDS[name]['A'])
        assert answers(query(lab, name, 'AAAA', lab.nameservers[server], tcp)) == sorted(RECORDS[name]['AAAA'])
    assert answers(query(lab, 'argotunnel.com', 'TXT')) == ['"tunnelwall fake edge"']
    assert query(lab, 'example.org', 'A').rcode() == dns.rcode.REFUSED
    assert query(lab, 'nosuch.argotunnel.com', 'A').rcode() == dns.rcode.NXDOMAIN


def test_queries_are_logged_with_the_client(lab):
    query(lab, 'region2.v2.argotunnel.com', 'AAAA')
    assert [(q['name'], q['type'], q['client']) for q in lab.dns.queries()] == [('region2.v2.argotunnel.com', 'AAAA', lab.state['controller'][0])]


def test_hosts_resolve_through_their_private_resolv_conf(lab):
    for name in lab.hosts:
        result = lab.probe(name, 'resolve', 'region1.v2.argotunnel.com')
        assert result['ok'], result
        assert result['addresses'] == sorted(RECORDS['region1.v2.argotunnel.com']['A'] + RECORDS['region1.v2.argotunnel.com']['AAAA'])
    clients = {q['client'] for q in lab.dns.queries()}
    assert clients <= {h['ipv4'] for h in lab.hosts.values()} | {h['ipv6'] for h in lab.hosts.values()}
    assert {h['ipv4'] for h in lab.hosts.values()} <= clients


def test_the_decoy_is_in_no_answer_but_is_served(lab):
    for node in RECORDS.values():
        for rdtype in ('A', 'AAAA'):
            assert edge_zone.DECOY['ipv4'] not in node.get(rdtype, []) and edge_zone.DECOY['ipv6'] not in node.get(rdtype, [])
    host = sorted(lab.hosts)[0]
    for address in edge_zone.DECOY.values():
        assert lab.probe(host, 'tls', address, 7844, 'h2.cftunnel.com')['ok']
        assert lab.probe(host, 'quic', address, 7844, 'quic.cftunnel.com')['ok']


@pytest.mark.parametrize('address', ['198.51.100.11', '2001:db8:e::23', '198.51.100.63'])
def test_tls_7844_presents_h2_cftunnel_com(lab, address):
    for name in lab.hosts:
        result = lab.probe(name, 'tls', address, 7844, 'h2.cftunnel.com', '--alpn', 'h2')
        assert result['ok'], result
        assert result['cert_names'] == ['h2.cftunnel.com'] and result['alpn'] == 'h2' and result['version'] == 'TLSv1.3'
    # Another name does not verify: the server really presents h2.cftunnel.com's certificate.
    assert lab.probe(sorted(lab.hosts)[0], 'tls', address, 7844, 'quic.cftunnel.com')['error'] == 'certificate'


@pytest.mark.parametrize('hostname', ['api.cloudflare.com', 'update.argotunnel.com', 'update.cloudflare.com'])
def test_tls_443_chooses_the_certificate_by_sni(lab, hostname):
    host = sorted(lab.hosts)[-1]
    for address in RECORDS[hostname]['A'] + RECORDS[hostname]['AAAA']:
        result = lab.probe(host, 'tls', address, 443, hostname, '--http')
        assert result['ok'], result
        assert result['cert_names'] == [hostname]
        assert result['status'] == 200 and result['body'] == {'server': hostname, 'port': 443, 'address': address}


@pytest.mark.parametrize('address', ['198.51.100.21', '2001:db8:e::12', '198.51.100.52', '2001:db8:e::92'])
def test_quic_handshake_with_alpn_argotunnel(lab, address):
    log = os.path.join(lab.edge_dir, 'connections.jsonl')
    for name in lab.hosts:
        result = lab.probe(name, 'quic', address, 7844, 'quic.cftunnel.com')
        assert result['ok'] and result['alpn'] == 'argotunnel', (name, result)
    with open(log, encoding='utf-8') as handle:
        handshakes = [json.loads(line) for line in handle if '"quic"' in line]
    assert sum(1 for h in handshakes if h['local'] == address) >= len(lab.hosts)


def test_quic_refuses_another_alpn_or_name(lab):
    host = sorted(lab.hosts)[0]
    assert lab.probe(host, 'quic', '198.51.100.11', 7844, 'quic.cftunnel.com', '--alpn', 'h3')['error'] == 'alpn'
    assert lab.probe(host, 'quic', '198.51.100.11', 7844, 'h2.cftunnel.com')['error'] == 'certificate'


def test_edge_endpoints_lookup_resolves_the_lab(lab, tmp_path):
    from ansible.plugins.loader import lookup_loader  # pylint: disable=import-outside-toplevel

    lookup = lookup_loader.get('tunnelwall.cloudflared.edge_endpoints')
    plan = lookup.run([], variables={}, nameservers=[lab.nameservers[0]], trusted_ranges=config.TRUSTED_RANGES,
                      cache_dir=str(tmp_path / 'cache'))[0]
    assert plan['source'] == 'dns'
    endpoints = {e['hostname']: e for e in plan['endpoints']}
    for hostname in edge_zone.REGION_HOSTS['global']:
        assert endpoints[hostname]['ipv4'] == RECORDS[hostname]['A']
        assert endpoints[hostname]['ipv6'] == RECORDS[hostname]['AAAA']
