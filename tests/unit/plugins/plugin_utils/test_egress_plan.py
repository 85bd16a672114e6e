# -*- coding: utf-8 -*-
"""Pure functions of the plan, fed with hand-made answers (no network)."""

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import cloudflare_catalog, edge_names, egress_plan
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils.edge_options import parse_options
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils.edge_resolver import Answer, Failure, SrvTarget


def options(**values):
    return parse_options(values.get)


def test_aggregate_exact_merges_neighbours_and_sorts():
    assert egress_plan.aggregate(['10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.9'], 32) == [
        '10.0.0.1/32', '10.0.0.2/31', '10.0.0.9/32']


def test_aggregate_widens_and_clears_host_bits():
    assert egress_plan.aggregate(['198.41.192.7', '198.41.192.227', '198.41.200.13'], 24) == [
        '198.41.192.0/24', '198.41.200.0/24']
    assert egress_plan.aggregate(['2606:4700:a0::1', '2606:4700:a8::1'], 40) == ['2606:4700::/40']


def test_aggregate_of_nothing_is_nothing():
    assert egress_plan.aggregate([], 32) == []


def test_shipped_ranges_are_valid_and_cover_every_published_edge_address():
    ranges = {family: [ipaddress.ip_network(r) for r in cidrs]
              for family, cidrs in cloudflare_catalog.CLOUDFLARE_RANGES.items()}
    assert all(n.version == 4 for n in ranges['ipv4']) and all(n.version == 6 for n in ranges['ipv6'])
    for hostname, families in cloudflare_catalog.PUBLISHED_EDGE.items():
        for family, addresses in families.items():
            # The legacy names were only ever published with IPv4 addresses.
            assert len(addresses) == (0 if hostname in edge_names.LEGACY_NAMES.region_hostnames and family == 'ipv6'
                                      else 10), hostname
            for address in addresses:
                assert any(ipaddress.ip_address(address) in n for n in ranges[family]), (hostname, address)


def test_catalog_is_dated_and_legacy_names_have_only_what_was_published():
    assert cloudflare_catalog.PUBLISHED_EDGE_TAKEN >= '2026-11-28'
    for hostname in edge_names.LEGACY_NAMES.region_hostnames:
        assert cloudflare_catalog.PUBLISHED_EDGE[hostname]['ipv6'] == ()
        v2 = hostname.replace('.argotunnel.com', '.v2.argotunnel.com')
        assert cloudflare_catalog.PUBLISHED_EDGE[hostname]['ipv4'] == cloudflare_catalog.PUBLISHED_EDGE[v2]['ipv4']


def test_names_cloudflared_2026_uses():
    assert edge_names.name_sets('fed', 'v2')[0].api == 'api.fed.cloudflare.com'
    assert edge_names.name_sets('us', 'v2')[0].api == 'api.cloudflare.com'
    assert edge_names.LEGACY_NAMES.updates == ('update.cloudflare.com', 'update.argotunnel.com')
    assert 'probe.cftunnel.com' in edge_names.TUNNEL_TLS_SERVER_NAMES['tcp']
    assert 'probe.cftunnel.com' in edge_names.TUNNEL_TLS_SERVER_NAMES['udp']


def test_catalog_knows_every_region_name():
    for region in edge_names.REGIONS:
        for names in edge_names.name_sets(region, 'v2'):
            assert set(names.region_hostnames) <= set(cloudflare_catalog.PUBLISHED_EDGE)
    assert set(edge_names.LEGACY_NAMES.region_hostnames) <= set(cloudflare_catalog.PUBLISHED_EDGE)


@pytest.mark.parametrize('region, srv', [
    ('global', '_v2-origintunneld._tcp.argotunnel.com'),
    ('us', '_us-v2-origintunneld._tcp.argotunnel.com'),
    ('fed', '_fed-v2-origintunneld._tcp.argotunnel.com'),
])
def test_srv_names_follow_cloudflared(region, srv):
    assert egress_plan.srv_names(options(region=region)) == [srv]


def _answers(opts, srv_records, addresses):
    results = {}
    for srv in egress_plan.srv_names(opts):
        results[(srv, 'SRV')] = Answer(srv, 'SRV', srv_records, 120, 'test')
    for host, (v4, v6) in addresses.items():
        results[(host, 'A')] = Answer(host, 'A', v4, 300, 'test') if v4 else Failure(host, 'A', 'no answer', '', 'test')
        results[(host, 'AAAA')] = Answer(host, 'AAAA', v6, 60, 'test') if v6 else Failure(host, 'AAAA', 'no answer', '', 'test')
    return results


def test_plan_ttl_is_the_smallest_answer_ttl():
    opts = options(purposes=['tunnel'])
    srv = (SrvTarget(1, 1, 7844, 'region1.v2.argotunnel.com'), SrvTarget(1, 1, 7844, 'region2.v2.argotunnel.com'))
    results = _answers(opts, srv, {
        'region1.v2.argotunnel.com': (('198.41.192.7',), ('2606:4700:a0::1',)),
        'region2.v2.argotunnel.com': (('198.41.200.13',), ()),
    })
    plan, ttl = egress_plan.plan_from_dns(opts, results, '2026-11-27T10:00:00Z')
    assert ttl == 60
    assert plan['endpoints'][1]['ipv6'] == [] and plan['endpoints'][1]['ttl'] == 300


def test_plan_fails_with_every_failure_listed():
    opts = options(purposes=['tunnel'])
    srv = (SrvTarget(1, 1, 7844, 'region1.v2.argotunnel.com'),)
    results = _answers(opts, srv, {'region1.v2.argotunnel.com': ((), ()), 'region2.v2.argotunnel.com': (('198.41.200.13',), ())})
    with pytest.raises(egress_plan.DnsFailed) as failure:
        egress_plan.plan_from_dns(opts, results, 'now')
    kinds = [(f.name, f.rdtype, f.kind) for f in failure.value.failures]
    assert ('_v2-origintunneld._tcp.argotunnel.com', 'SRV', 'too few targets') in kinds
    assert ('region1.v2.argotunnel.com', 'A', 'no answer') in kinds


def test_ownership_checks_cloudflare_names_and_chosen_extras_only():
    opts = options(trusted_ranges=['198.51.100.0/24'], ip_version='4',
                   extra_hostnames=['github.com', {'hostname': 'x.cloudflareaccess.com', 'verify_ownership': True}])
    endpoints = [
        {'hostname': 'region1.v2.argotunnel.com', 'purpose': 'tunnel', 'ipv4': ['198.51.100.1', '203.0.113.9'], 'ipv6': []},
        {'hostname': 'github.com', 'purpose': 'extra', 'ipv4': ['140.82.121.4'], 'ipv6': []},
        {'hostname': 'x.cloudflareaccess.com', 'purpose': 'extra', 'ipv4': ['8.8.8.8'], 'ipv6': []},
    ]
    assert egress_plan.ownership_violations(endpoints, opts, 'r') == [
        'region1.v2.argotunnel.com resolved to 203.0.113.9 via r', 'x.cloudflareaccess.com resolved to 8.8.8.8 via r']


def test_catalog_plan_leaves_out_what_has_no_published_addresses():
    plan, left_out = egress_plan.plan_from_catalog(options(generation='both', extra_hostnames=['github.com']), 'now')
    assert plan['source'] == 'catalog'
    assert left_out == ['api.cloudflare.com', 'update.argotunnel.com', 'update.cloudflare.com', 'github.com']
    assert {e['purpose'] for e in plan['endpoints']} == {'tunnel'}
    assert len(plan['endpoints']) == 4
    # Legacy and v2 region names share addresses: the rules hold each block once.
    assert len(plan['rules'][0]['ipv4']) == len(egress_plan.aggregate(
        cloudflare_catalog.PUBLISHED_EDGE['region1.v2.argotunnel.com']['ipv4']
        + cloudflare_catalog.PUBLISHED_EDGE['region2.v2.argotunnel.com']['ipv4'], 32))
