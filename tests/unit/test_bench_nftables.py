# -*- coding: utf-8 -*-
"""The nftables benchmark's own checks: a bench that miscounts what the ruleset holds would time the wrong job."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.bench import bench_nftables

# `nft -j list table inet t` from nft 1.0.6, a set in each of the forms nft prints elements in: a single
# address, a range, a prefix, an element with a counter (wrapped in "elem"), and an empty set (no "elem" key).
LISTING = json.loads('''{"nftables": [
 {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "t", "handle": 1}},
 {"set": {"family": "inet", "name": "s", "table": "t", "type": "ipv6_addr", "handle": 1, "flags": ["interval"],
          "elem": ["2001:db8:e::b:1", {"range": ["2001:db8:e::b:2", "2001:db8:e::b:7"]},
                   {"prefix": {"addr": "2001:db8:e::c:0", "len": 112}}]}},
 {"set": {"family": "inet", "name": "c", "table": "t", "type": "ipv6_addr", "handle": 2, "flags": ["interval"],
          "elem": [{"elem": {"val": "2001:db8:e::b:1", "counter": {"packets": 0, "bytes": 0}}}],
          "stmt": [{"counter": null}]}},
 {"set": {"family": "inet", "name": "empty", "table": "t", "type": "ipv4_addr", "handle": 3, "flags": ["interval"]}}
]}''')

# `nft list chain inet bench output` as nft prints it: tabs.
CHAIN = """table inet bench {
\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\tip6 daddr @tunnel_tcp_7844_v6 tcp dport 7844 accept
\t\tip6 daddr @tunnel_udp_7844_v6 udp dport 7844 accept
\t}
}
"""


def test_every_element_form_covers_its_addresses():
    elements = bench_nftables.sets_of(LISTING)['s']
    inside = ['2001:db8:e::b:1', '2001:db8:e::b:2', '2001:db8:e::b:7', '2001:db8:e::c:0', '2001:db8:e::c:ffff']
    outside = ['2001:db8:e::b:8', '2001:db8:e::d:0', '2001:db8:e::b:0']
    assert bench_nftables.uncovered(inside + outside, elements) == outside


def test_an_element_with_a_counter_is_unwrapped():
    assert bench_nftables.uncovered(['2001:db8:e::b:1', '2001:db8:e::b:2'], bench_nftables.sets_of(LISTING)['c']) \
        == ['2001:db8:e::b:2']


def test_an_ipv4_address_is_never_inside_an_ipv6_range():
    # ::c000:201 and 192.0.2.1 have the same integer value: only the version tells them apart.
    elements = [{'range': ['::', '::ffff:ffff']}]
    assert bench_nftables.uncovered(['192.0.2.1', '::c000:201'], elements) == ['192.0.2.1']


def test_an_unknown_element_form_is_an_error_not_a_miss():
    with pytest.raises(ValueError, match='concat'):
        bench_nftables.element_ranges({'concat': ['2001:db8::1', 7844]})


def test_complete_sets_names_only_the_sets_holding_every_address():
    assert bench_nftables.sets_of(LISTING)['empty'] == []
    assert bench_nftables.complete_sets(LISTING, ['2001:db8:e::b:1']) == ['c', 's']
    assert bench_nftables.complete_sets(LISTING, ['2001:db8:e::b:1', '2001:db8:e::b:3']) == ['s']
    assert bench_nftables.complete_sets(LISTING, ['2001:db8:e::ff:1']) == []


def test_the_chain_policy_is_not_counted_as_a_rule():
    assert bench_nftables.accept_rules(CHAIN) == 2
    assert bench_nftables.accept_rules(CHAIN.replace('policy accept', 'policy drop')) == 2
    assert bench_nftables.accept_rules(CHAIN.replace('tcp dport 7844 accept', 'tcp dport 7844 drop')) == 1


def test_the_plan_rules_are_bench_firewalls():
    rules = bench_nftables.plan_rules(['2001:db8:e::b:1', '2001:db8:e::b:2'])
    assert rules == [{'purpose': 'tunnel', 'protocol': protocol, 'port': 7844, 'ipv4': [],
                      'ipv6': ['2001:db8:e::b:1/128', '2001:db8:e::b:2/128']} for protocol in ('tcp', 'udp')]


def test_the_loop_is_one_command_per_object_and_per_address():
    addresses = ['2001:db8:e::b:%x' % index for index in range(1, 21)]
    tasks = yaml.safe_load(bench_nftables.NFT_LOOP.format(
        table='bench', port=7844, protocols=json.dumps(['tcp', 'udp']), addresses=json.dumps(addresses)))
    commands = [task['ansible.builtin.command'] for task in tasks]
    assert all(set(task) <= {'name', 'ansible.builtin.command', 'loop'} for task in tasks)
    assert commands[:2] == ['nft add table inet bench',
                            "nft add chain inet bench output '{ type filter hook output priority 0 ; policy accept ; }'"]
    assert commands[-1] == "nft add element inet bench tunnel_{{ item.1 }}_7844_v6 '{ {{ item.0 }} }'"
    # Ansible expands the element loop to 20 addresses x 2 protocols: one task run per rule.
    assert tasks[-1]['loop'] == '{{ %s | product(["tcp", "udp"]) | list }}' % json.dumps(addresses)


def test_the_loop_runs_as_many_commands_as_the_report_says():
    addresses = ['2001:db8:e::b:%x' % index for index in range(1, 21)]
    tasks = yaml.safe_load(bench_nftables.NFT_LOOP.format(
        table='bench', port=7844, protocols=json.dumps(['tcp', 'udp']), addresses=json.dumps(addresses)))
    runs = 0
    for task in tasks:
        loop = task.get('loop', [None])
        # The element loop is a template: the product of the addresses and the protocols.
        runs += len(loop) if isinstance(loop, list) else len(addresses) * 2
    assert runs == bench_nftables.loop_commands(len(addresses)) == 47


def test_the_ratio_is_the_loop_over_the_module_for_each_column():
    figures = {'nft command loop': (24.0, 30.0), 'nftables_egress': (1.2, 1.0)}
    text = bench_nftables.report(figures, 0.83, 3, (1.0, 2.0))
    assert 'ratio nft command loop / nftables_egress: 20.0x first apply, 30.0x rerun (goal >= 20x)' in text
    assert 'the loop runs 47 nft commands' in text
