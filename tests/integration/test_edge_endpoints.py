# -*- coding: utf-8 -*-
"""edge_endpoints against a real DNS server on the wire (tests/support/dns_server.py)."""

from __future__ import annotations

import re
import time

import pytest

from ansible.errors import AnsibleError

from tests.support import edge_zone
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils.cloudflare_catalog import PUBLISHED_EDGE

V2 = edge_zone.SRV_NAMES['global']


def hostnames(plan):
    return [e['hostname'] for e in plan['endpoints']]


def rule(plan, purpose, protocol):
    matches = [r for r in plan['rules'] if r['purpose'] == purpose and r['protocol'] == protocol]
    assert len(matches) == 1, plan['rules']
    return matches[0]


def asked(dns):
    return sorted((q['name'], q['type']) for q in dns.queries())


def test_default_plan_is_the_global_v2_edge_with_api_and_update(lookup, dns):
    plan = lookup()
    assert plan['version'] == 1
    assert (plan['region'], plan['generation'], plan['source']) == ('global', 'v2', 'dns')
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', plan['resolved_at'])
    assert plan['srv_names'] == [V2]
    assert hostnames(plan) == ['region1.v2.argotunnel.com', 'region2.v2.argotunnel.com',
                               'api.cloudflare.com', 'update.argotunnel.com']
    region1 = plan['endpoints'][0]
    assert region1['purpose'] == 'tunnel' and region1['port'] == 7844
    assert region1['protocols'] == ['tcp', 'udp']
    assert region1['server_names'] == {'tcp': 'h2.cftunnel.com', 'udp': 'quic.cftunnel.com'}
    # Every SNI cloudflared may send, the pre-checks' probe.cftunnel.com included, for SNI-filtering firewalls.
    assert region1['tls_server_names'] == {'tcp': ['h2.cftunnel.com', 'probe.cftunnel.com'],
                                           'udp': ['quic.cftunnel.com', 'probe.cftunnel.com']}
    assert plan['endpoints'][2]['tls_server_names'] == {'tcp': ['api.cloudflare.com']}
    assert region1['ipv4'] == ['198.51.100.11', '198.51.100.12', '198.51.100.13']
    assert region1['ipv6'] == ['2001:db8:e::11', '2001:db8:e::12', '2001:db8:e::13']
    assert region1['ttl'] == 300
    assert [(r['purpose'], r['protocol'], r['port']) for r in plan['rules']] == [
        ('tunnel', 'tcp', 7844), ('tunnel', 'udp', 7844), ('api', 'tcp', 443), ('update', 'tcp', 443)]
    assert rule(plan, 'tunnel', 'udp')['ipv4'] == [
        '198.51.100.11/32', '198.51.100.12/31', '198.51.100.21/32', '198.51.100.22/31']
    assert rule(plan, 'api', 'tcp') == {'purpose': 'api', 'protocol': 'tcp', 'port': 443,
                                        'ipv4': ['198.51.100.80/32'], 'ipv6': ['2001:db8:e::80/128']}
    # SRV first, then A and AAAA of every name: nothing else, nothing twice.
    assert asked(dns) == sorted([(V2, 'SRV')] + [(h, t) for h in hostnames(plan) for t in ('A', 'AAAA')])


@pytest.mark.parametrize('region, prefix', [('global', ''), ('us', 'us-'), ('fed', 'fed-')])
def test_each_region_uses_its_srv_name_and_region_hosts(lookup, dns, region, prefix):
    plan = lookup(region=region, purposes=['tunnel'])
    assert plan['region'] == region
    assert hostnames(plan) == ['%sregion1.v2.argotunnel.com' % prefix, '%sregion2.v2.argotunnel.com' % prefix]
    assert ('_%sv2-origintunneld._tcp.argotunnel.com' % prefix, 'SRV') in asked(dns)
    expected = edge_zone.lab_addresses('%sregion2.v2.argotunnel.com' % prefix)['A']
    assert plan['endpoints'][1]['ipv4'] == expected


def test_fed_region_uses_the_fedramp_api_and_the_prechecks(lookup, dns):
    # A FedRAMP cert.pem sends cloudflared's commands to api.fed.cloudflare.com; its start-up pre-check dials
    # api.cloudflare.com:443 whatever the endpoint (prechecks/probes.go): a fed plan carries both.
    plan = lookup(region='fed')
    assert hostnames(plan) == ['fed-region1.v2.argotunnel.com', 'fed-region2.v2.argotunnel.com',
                               'api.cloudflare.com', 'api.fed.cloudflare.com', 'update.argotunnel.com']
    assert rule(plan, 'api', 'tcp')['ipv4'] == ['198.51.100.80/32', '198.51.100.83/32']
    assert ('api.cloudflare.com', 'A') in asked(dns)


@pytest.mark.parametrize('region', ['global', 'us', 'fed'])
def test_every_plan_names_what_cloudflared_resolves_without_connecting(lookup, dns, region):
    # The virtual DNS service resolves region1.v2.argotunnel.com every 5 minutes whatever the region
    # (ingress/origins/dns.go); a resolver that filters by name must answer it, and the TXT names.
    plan = lookup(region=region, purposes=['tunnel'])
    assert [(e['name'], e['types']) for e in plan['dns_names']] == [
        ('region1.v2.argotunnel.com', ['A', 'AAAA']), ('cfd-features.argotunnel.com', ['TXT']),
        ('protocol-v2.argotunnel.com', ['TXT'])]
    assert all(e['why'] for e in plan['dns_names'])


def test_legacy_generation_is_the_original_page_and_the_update_host_of_its_releases(lookup, dns):
    plan = lookup(generation='legacy')
    assert hostnames(plan) == ['region1.argotunnel.com', 'region2.argotunnel.com',
                               'api.cloudflare.com', 'update.argotunnel.com', 'update.cloudflare.com']
    assert rule(plan, 'update', 'tcp')['ipv4'] == ['198.51.100.81/32', '198.51.100.82/32']
    assert ('_origintunneld._tcp.argotunnel.com', 'SRV') in asked(dns)
    assert (V2, 'SRV') not in asked(dns)


def test_both_generations_are_merged_without_duplicates(lookup, dns):
    plan = lookup(generation='both')
    assert plan['srv_names'] == [V2, '_origintunneld._tcp.argotunnel.com']
    assert hostnames(plan) == ['region1.argotunnel.com', 'region1.v2.argotunnel.com', 'region2.argotunnel.com',
                               'region2.v2.argotunnel.com', 'api.cloudflare.com', 'update.argotunnel.com',
                               'update.cloudflare.com']
    srv = {name for name, rdtype in asked(dns) if rdtype == 'SRV'}
    assert srv == {V2, '_origintunneld._tcp.argotunnel.com'}
    assert len(asked(dns)) == len(set(asked(dns))), 'a name was asked twice'


@pytest.mark.parametrize('ip_version, present, absent', [('4', 'ipv4', 'ipv6'), ('6', 'ipv6', 'ipv4')])
def test_one_family_only(lookup, dns, ip_version, present, absent):
    plan = lookup(ip_version=ip_version)
    assert all(e[present] and not e[absent] for e in plan['endpoints'])
    assert all(r[present] and not r[absent] for r in plan['rules'])
    unwanted = 'AAAA' if absent == 'ipv6' else 'A'
    assert not [q for q in asked(dns) if q[1] == unwanted]


def test_both_families_by_default(lookup):
    plan = lookup()
    assert all(e['ipv4'] and e['ipv6'] for e in plan['endpoints'])


def test_srv_port_is_honoured(lookup, dns):
    dns.set(srv_port=7900)
    plan = lookup()
    assert {e['port'] for e in plan['endpoints'] if e['purpose'] == 'tunnel'} == {7900}
    assert {r['port'] for r in plan['rules'] if r['purpose'] == 'tunnel'} == {7900}


def test_srv_target_not_known_in_advance_is_resolved(lookup, dns):
    records = edge_zone.edge_records()
    records[V2]['SRV'][1][3] = 'region9.v2.argotunnel.com'
    records['region9.v2.argotunnel.com'] = {'A': ['198.51.100.71'], 'AAAA': ['2001:db8:e::71'], 'ttl': 60}
    dns.set(records=records)
    plan = lookup(purposes=['tunnel'])
    # The well-known names stay in the plan, so the allow-list survives the change.
    assert hostnames(plan) == ['region1.v2.argotunnel.com', 'region2.v2.argotunnel.com', 'region9.v2.argotunnel.com']
    assert '198.51.100.71/32' in rule(plan, 'tunnel', 'tcp')['ipv4']


def test_one_srv_target_is_an_error_like_cloudflared(lookup, dns):
    records = edge_zone.edge_records()
    records[V2]['SRV'] = records[V2]['SRV'][:1]
    dns.set(records=records)
    with pytest.raises(AnsibleError, match=r'SRV %s .*too few targets.*expected at least 2 Cloudflare Regions '
                                           r'regions, but SRV only returned 1' % re.escape(V2)):
        lookup()


@pytest.mark.parametrize('fault, cause', [('servfail', 'SERVFAIL'), ('nxdomain', 'NXDOMAIN'),
                                          ('refused', 'REFUSED'), ('timeout', 'timeout')])
def test_dns_failure_names_the_name_type_resolver_and_cause(lookup, dns, fault, cause):
    dns.set(faults={V2: fault})
    started = time.monotonic()
    with pytest.raises(AnsibleError) as failure:
        lookup(timeout=0.5, lifetime=1)
    elapsed = time.monotonic() - started
    message = str(failure.value)
    assert 'SRV %s via 127.0.0.1:%d: %s' % (V2, dns.port, cause) in message
    # Only the failed name is reported.
    assert 'region1.v2.argotunnel.com' not in message
    assert elapsed < 1.6, 'the failure took %.2fs, longer than lifetime' % elapsed


def test_every_failed_name_is_reported_at_once(lookup, dns):
    dns.set(faults={'api.cloudflare.com/A': 'servfail', 'update.argotunnel.com': 'nxdomain'})
    with pytest.raises(AnsibleError) as failure:
        lookup()
    message = str(failure.value)
    assert 'A api.cloudflare.com via' in message and 'SERVFAIL' in message
    assert 'A update.argotunnel.com via' in message and 'AAAA update.argotunnel.com via' in message


def test_a_name_without_any_address_is_an_error(lookup, dns):
    records = edge_zone.edge_records()
    records['api.cloudflare.com'] = {'TXT': ['no address here'], 'ttl': 300}
    dns.set(records=records)
    with pytest.raises(AnsibleError, match='api.cloudflare.com via .*no answer'):
        lookup()


def test_spoofed_answer_fails_the_ownership_guard(lookup, dns):
    dns.set(faults={'region2.v2.argotunnel.com': 'spoof'})
    with pytest.raises(AnsibleError) as failure:
        lookup()
    message = str(failure.value)
    resolver = '127.0.0.1:%d' % dns.port
    assert 'region2.v2.argotunnel.com resolved to 198.18.0.66 via %s' % resolver in message
    assert 'region2.v2.argotunnel.com resolved to 100::66 via %s' % resolver in message
    assert 'trusted_ranges (198.51.100.0/24, 2001:db8::/32)' in message


def test_cloudflare_addresses_pass_the_shipped_ranges(lookup, dns, warnings):
    dns.set(profile='published')
    plan = lookup(trusted_ranges=[])
    region1 = plan['endpoints'][0]
    assert region1['ipv4'] == sorted(PUBLISHED_EDGE['region1.v2.argotunnel.com']['ipv4'],
                                     key=lambda a: tuple(int(o) for o in a.split('.')))
    assert warnings == []


def test_lab_addresses_fail_the_shipped_ranges(lookup):
    with pytest.raises(AnsibleError, match=r"outside Cloudflare's published ranges \(taken \d{4}-\d\d-\d\d\)"):
        lookup(trusted_ranges=[])


def test_verify_ownership_false_accepts_with_a_warning(lookup, dns, warnings):
    dns.set(faults={'region2.v2.argotunnel.com': 'spoof'})
    plan = lookup(verify_ownership=False, trusted_ranges=[])
    assert plan['endpoints'][1]['ipv4'] == ['198.18.0.66']
    assert any('verify_ownership=false' in w for w in warnings)


def test_extra_hostnames_are_not_cloudflare_unless_asked(lookup, dns):
    dns.set(profile='published')
    plan = lookup(trusted_ranges=[], purposes=['tunnel'],
                  extra_hostnames=['github.com', {'hostname': 'myteam.cloudflareaccess.com', 'port': 8443,
                                                  'verify_ownership': True}])
    extras = [e for e in plan['endpoints'] if e['purpose'] == 'extra']
    # github.com has no AAAA, which is fine with ip_version=both.
    assert [(e['hostname'], e['port'], e['ipv4'], e['ipv6']) for e in extras] == [
        ('github.com', 443, ['140.82.121.4'], []),
        ('myteam.cloudflareaccess.com', 8443, ['104.19.192.91'], ['2606:4700::6813:c05b'])]
    assert [(r['protocol'], r['port']) for r in plan['rules'] if r['purpose'] == 'extra'] == [('tcp', 443), ('tcp', 8443)]
    with pytest.raises(AnsibleError, match='github.com resolved to 140.82.121.4'):
        lookup(trusted_ranges=[], extra_hostnames=[{'hostname': 'github.com', 'verify_ownership': True}])


def test_catalog_fallback_is_labelled_and_not_cached(lookup, dns, warnings):
    dns.set(faults={'*': 'timeout'})
    plan = lookup(on_dns_failure='catalog', timeout=0.3, lifetime=0.5)
    assert plan['source'] == 'catalog'
    assert re.fullmatch(r'\d{4}-\d\d-\d\d', plan['catalog_taken'])
    assert hostnames(plan) == ['region1.v2.argotunnel.com', 'region2.v2.argotunnel.com']
    assert plan['endpoints'][1]['ipv6'] == list(PUBLISHED_EDGE['region2.v2.argotunnel.com']['ipv6'])
    assert [(r['protocol'], r['port']) for r in plan['rules']] == [('tcp', 7844), ('udp', 7844)]
    assert any('source=catalog' in w and 'timeout' in w for w in warnings)
    assert any('api.cloudflare.com, update.argotunnel.com: left out' in w for w in warnings)
    # DNS is back: the next call asks again rather than serving the catalog from the cache.
    dns.set()
    dns.clear_log()
    assert lookup(on_dns_failure='catalog')['source'] == 'dns'
    assert dns.queries()


def test_catalog_is_never_used_unless_asked(lookup, dns):
    dns.set(faults={'*': 'servfail'})
    with pytest.raises(AnsibleError, match='DNS did not give a complete plan'):
        lookup()


def test_rules_widened_to_covering_blocks(lookup, warnings):
    plan = lookup(prefix_v4=24, prefix_v6=64)
    assert rule(plan, 'tunnel', 'tcp')['ipv4'] == ['198.51.100.0/24']
    assert rule(plan, 'tunnel', 'tcp')['ipv6'] == ['2001:db8:e::/64']
    # Endpoints keep the exact addresses; only the rules widen.
    assert plan['endpoints'][0]['ipv4'] == ['198.51.100.11', '198.51.100.12', '198.51.100.13']
    assert warnings == []


def test_widening_past_cloudflare_ranges_warns(lookup, dns, warnings):
    dns.set(profile='published')
    plan = lookup(trusted_ranges=[], prefix_v4=16)
    assert '198.41.0.0/16' in rule(plan, 'tunnel', 'tcp')['ipv4']
    assert any('widen the rules past' in w and '198.41.0.0/16' in w for w in warnings)


def test_plan_is_stable_whatever_order_dns_answers_in(lookup, dns):
    first = lookup(cache=False)
    records = edge_zone.edge_records()
    for node in records.values():
        for values in node.values():
            if isinstance(values, list):
                values.reverse()
    dns.set(records=records)
    second = lookup(cache=False)
    first.pop('resolved_at')
    second.pop('resolved_at')
    assert first == second


def test_cache_sends_no_second_query_within_the_ttl(lookup, dns):
    first = lookup()
    assert dns.queries()
    dns.clear_log()
    assert lookup() == first
    assert dns.queries() == []
    # Other options are another plan.
    lookup(ip_version='4')
    assert dns.queries()


def test_cache_expires_with_the_smallest_ttl(lookup, dns):
    records = edge_zone.edge_records()
    records['update.argotunnel.com']['ttl'] = 1
    dns.set(records=records)
    lookup()
    dns.clear_log()
    lookup()
    assert dns.queries() == []
    time.sleep(1.2)
    lookup()
    assert dns.queries()


def test_cache_false_always_asks(lookup, dns):
    lookup(cache=False)
    dns.clear_log()
    lookup(cache=False)
    assert dns.queries()


def test_queries_run_concurrently(lookup, dns):
    dns.set(delay_ms=300)
    started = time.monotonic()
    plan = lookup(generation='both', cache=False)
    elapsed = time.monotonic() - started
    sent = len(dns.queries())
    assert sent == 2 + 2 * len(plan['endpoints'])
    # One round trip of 0.3 s, not one per query (4.8 s in series).
    assert elapsed < 0.6, '%d queries took %.2fs' % (sent, elapsed)


def test_an_unknown_srv_target_costs_one_more_round_trip(lookup, dns):
    records = edge_zone.edge_records()
    records[V2]['SRV'][0][3] = 'region7.v2.argotunnel.com'
    records['region7.v2.argotunnel.com'] = {'A': ['198.51.100.77'], 'AAAA': ['2001:db8:e::77'], 'ttl': 60}
    dns.set(records=records, delay_ms=300)
    started = time.monotonic()
    lookup(cache=False)
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 0.9, elapsed


def test_tcp_transport(lookup, dns):
    lookup(tcp=True)
    assert {q['transport'] for q in dns.queries()} == {'tcp'}


def test_ipv6_nameserver(lookup, dns):
    plan = lookup(nameservers=['::1'], port=dns.ports['::1'])
    assert plan['source'] == 'dns'
    assert {q['client'] for q in dns.queries()} == {'::1'}


def test_dot_fallback_answers_the_srv_query(lookup, dns, dot, lab_ca):
    dns.set(faults={V2: 'servfail'})
    plan = lookup(dot_fallback=True, dot_server='127.0.0.1', dot_port=dot.tls_ports['127.0.0.1'],
                  dot_ca_path=lab_ca['ca'])
    assert plan['source'] == 'dns'
    assert [(q['name'], q['type'], q['transport']) for q in dot.queries()] == [(V2, 'SRV', 'tls')]
    # The A and AAAA queries still go to the normal resolver, as in cloudflared.
    assert ('region1.v2.argotunnel.com', 'A') in asked(dns)


def test_dot_fallback_checks_the_server_name(lookup, dns, dot, lab_ca):
    dns.set(faults={V2: 'servfail'})
    with pytest.raises(AnsibleError) as failure:
        lookup(dot_fallback=True, dot_server='127.0.0.1', dot_port=dot.tls_ports['127.0.0.1'],
               dot_ca_path=lab_ca['ca'], dot_server_name='dns.example.org')
    message = str(failure.value)
    assert 'DNS-over-TLS 127.0.0.1:%d (dns.example.org)' % dot.tls_ports['127.0.0.1'] in message
    assert 'TLS error' in message
    assert dot.queries() == []


def test_without_dot_fallback_no_tls_query(lookup, dns, dot):
    dns.set(faults={V2: 'servfail'})
    with pytest.raises(AnsibleError):
        lookup(dot_server='127.0.0.1', dot_port=dot.tls_ports['127.0.0.1'])
    assert dot.queries() == []


BAD_INPUT = [
    ({'region': 'eu'}, 'region', 'eu'),
    ({'generation': 'v3'}, 'generation', 'v3'),
    ({'generation': 'legacy', 'region': 'us'}, 'generation', 'legacy'),
    ({'purposes': ['tunnel', 'ssh']}, 'purposes', 'ssh'),
    ({'ip_version': '5'}, 'ip_version', '5'),
    ({'nameservers': ['1.2.3']}, 'nameservers', '1.2.3'),
    ({'nameservers': ['dns.google']}, 'nameservers', 'dns.google'),
    ({'port': 0}, 'port', '0'),
    ({'port': 70000}, 'port', '70000'),
    ({'timeout': -1}, 'timeout', '-1'),
    ({'timeout': 0}, 'timeout', '0'),
    ({'timeout': 3, 'lifetime': 1}, 'lifetime', '1'),
    ({'prefix_v4': 33}, 'prefix_v4', '33'),
    ({'prefix_v4': 8}, 'prefix_v4', '8'),
    ({'prefix_v6': 16}, 'prefix_v6', '16'),
    ({'trusted_ranges': ['198.51.100.1/24']}, 'trusted_ranges', '198.51.100.1/24'),
    ({'trusted_ranges': ['not-a-network']}, 'trusted_ranges', 'not-a-network'),
    ({'verify_ownership': False}, 'trusted_ranges', '198.51.100.0/24'),
    ({'on_dns_failure': 'ignore'}, 'on_dns_failure', 'ignore'),
    ({'extra_hostnames': ['not a host']}, 'extra_hostnames.hostname', 'not a host'),
    ({'extra_hostnames': [{'hostname': 'github.com', 'port': 'https'}]}, 'extra_hostnames.port', 'https'),
    ({'extra_hostnames': [{'hostname': 'github.com', 'protocols': ['icmp']}]}, 'extra_hostnames.protocols', 'icmp'),
    ({'extra_hostnames': [{'host': 'github.com'}]}, 'extra_hostnames', 'host'),
    ({'dot_server': 'one.one.one.one'}, 'dot_server', 'one.one.one.one'),
    ({'dot_port': 99999}, 'dot_port', '99999'),
]


@pytest.mark.parametrize('options, option, value', BAD_INPUT, ids=[str(case[0]) for case in BAD_INPUT])
def test_bad_input_names_option_and_value_and_sends_nothing(lookup, dns, options, option, value):
    with pytest.raises(AnsibleError) as failure:
        lookup(**options)
    message = str(failure.value)
    assert option in message and value in message, message
    assert dns.queries() == []


def test_terms_are_refused(edge_endpoints):
    with pytest.raises(AnsibleError, match='takes no terms'):
        edge_endpoints.run(['region1.v2.argotunnel.com'], variables={})


def test_cache_lives_for_the_smallest_ttl_along_a_cname_chain(lookup, dns):
    records = edge_zone.edge_records()
    records['api-edge.cloudflare.com'] = dict(records['api.cloudflare.com'], ttl=300)
    records['api.cloudflare.com'] = {'CNAME': 'api-edge.cloudflare.com', 'ttl': 1}
    dns.set(records=records)
    plan = lookup()
    api = [e for e in plan['endpoints'] if e['hostname'] == 'api.cloudflare.com'][0]
    assert api['ipv4'] == edge_zone.lab_addresses('api.cloudflare.com')['A']
    assert api['ttl'] == 1
    dns.clear_log()
    time.sleep(1.2)
    lookup()
    assert ('api.cloudflare.com', 'A') in asked(dns)


@pytest.mark.parametrize('target, port, problem', [
    ('region2.v2.argotunnel.com', 0, 'target region2.v2.argotunnel.com has port 0; expected 1 to 65535'),
    ('bad\\000label.argotunnel.com', 7844, "target 'bad\\\\000label.argotunnel.com' is not a host name"),
])
def test_a_bad_srv_answer_is_named_by_the_lookup(lookup, dns, target, port, problem):
    records = edge_zone.edge_records()
    records[V2]['SRV'][1] = [1, 1, port, target]
    dns.set(records=records)
    with pytest.raises(AnsibleError) as error:
        lookup()
    message = str(error.value)
    assert 'SRV %s via 127.0.0.1:%d: bad answer' % (V2, dns.port) in message
    assert problem in message
