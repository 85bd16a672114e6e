# -*- coding: utf-8 -*-
"""Reading back the allow-list a firewall holds, by purpose, from each backend's own objects (drift)."""

from __future__ import annotations

import json

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_applied

from tests.unit.plugins.module_utils.test_ufw_rules import HEAD4, TAIL4, UFW_CLI_V4, USER_SSH


def test_ufw_rules_of_the_name_by_purpose_and_nothing_else():
    # The user's own SSH rule is not ours; ours carries the comment tunnelwall:tunnel.
    text = HEAD4 + USER_SSH + '\n' + '\n'.join(UFW_CLI_V4) + '\n\n' + TAIL4
    assert egress_applied.from_ufw({'ipv4': text, 'ipv6': None}, 'tunnelwall') == {'tunnel': ['198.51.100.11']}
    assert egress_applied.from_ufw({'ipv4': text}, 'other') == {}


def test_firewalld_ipsets_of_the_name_by_purpose():
    ipsets = {'tunnelwall-tunnel-v4': {'entries': ['198.51.100.11', '198.51.100.12/31']},
              'tunnelwall-api-tcp443-v6': {'entries': ['2001:db8:e::80']},
              'other-tunnel-v4': {'entries': ['192.0.2.1']}}
    assert egress_applied.from_firewalld(ipsets, 'tunnelwall') == {
        'api': ['2001:db8:e::80'], 'tunnel': ['198.51.100.11', '198.51.100.12/31']}


def test_nftables_sets_as_nft_lists_them():
    listing = {'nftables': [
        {'metainfo': {'json_schema_version': 1}},
        {'table': {'family': 'inet', 'name': 'tunnelwall'}},
        {'set': {'family': 'inet', 'name': 'tunnel_udp_7844_v4', 'table': 'tunnelwall', 'type': 'ipv4_addr',
                 'flags': ['interval'], 'elem': ['198.51.100.11', {'prefix': {'addr': '198.51.100.12', 'len': 31}},
                                                 {'range': ['198.51.100.21', '198.51.100.23']}]}},
        {'set': {'family': 'inet', 'name': 'host_dns_udp_53_v4', 'table': 'tunnelwall', 'elem': ['10.0.0.2']}},
        {'set': {'family': 'inet', 'name': 'api_tcp_443_v6', 'table': 'tunnelwall', 'elem': ['2001:db8:e::80']}},
        {'chain': {'family': 'inet', 'name': 'output', 'table': 'tunnelwall'}},
    ]}
    found = egress_applied.from_nftables(json.dumps(listing))
    assert found['tunnel'] == ['198.51.100.11', '198.51.100.12/31', '198.51.100.21-198.51.100.23']
    assert found['api'] == ['2001:db8:e::80']


def test_rule_changes_one_shape_sorted_and_port_none_kept_apart_from_zero():
    kept = {'purpose': 'tunnel', 'family': 'ipv4', 'protocol': 'udp', 'port': 7844, 'destination': '198.51.100.1'}
    gone = dict(kept, destination='198.51.100.2')
    new_v6 = {'purpose': 'tunnel', 'family': 'ipv6', 'protocol': 'tcp', 'port': 7844, 'destination': '2001:db8::1'}
    new_api = {'purpose': 'api', 'family': 'ipv4', 'protocol': 'tcp', 'port': 443, 'destination': '192.0.2.9'}
    any_port = dict(new_api, port=None)
    added, removed = egress_applied.rule_changes([kept, gone], [new_v6, kept, new_api, any_port])
    assert added == [any_port, new_api, new_v6]
    assert removed == [gone]
    assert egress_applied.rule_changes([kept], [dict(kept)]) == ([], [])


PLAN = {'rules': [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.1/32'], 'ipv6': []},
                  {'purpose': 'origin', 'protocol': 'tcp', 'port': 443, 'ipv4': ['10.9.9.9/32'], 'ipv6': []}]}
ORIGIN_RULES = [{'purpose': 'origin', 'protocol': 'tcp', 'port': 443, 'ipv4': ['10.1.2.4/32'], 'ipv6': ['fd0a::4/128']},
                {'purpose': 'origin', 'protocol': 'tcp', 'port': 22, 'ipv4': ['10.1.2.3/32'], 'ipv6': []}]


def test_origins_drift_only_when_resolved_on_the_host_is_given():
    """Purpose origin: compared with the origins resolved afresh on the host (never with a plan's, which has none of
    the host's names); without them the firewall's origin rules are not drift."""
    applied = {'tunnel': ['198.51.100.1/32'], 'origin': ['10.1.2.3/32', '10.1.2.5/32']}
    assert egress_applied.plan_drift(applied, PLAN) == {'new': 0, 'gone': 0, 'purposes': [], 'text': '+0/\u22120'}
    drift = egress_applied.plan_drift(applied, PLAN, ORIGIN_RULES)
    # 10.1.2.4 and fd0a::4 are new (the name moved there, or a new ingress rule), 10.1.2.5 gone; 10.1.2.3 stays.
    assert drift == {'new': 2, 'gone': 1, 'purposes': ['origin'], 'text': '+2/\u22121'}
    # A firewall without origin rules yet: the resolved origins are all new; none resolved: the applied ones gone.
    assert egress_applied.plan_drift({'tunnel': ['198.51.100.1/32']}, PLAN, ORIGIN_RULES)['new'] == 3
    assert egress_applied.plan_drift(applied, PLAN, [])['text'] == '+0/\u22122'
    assert egress_applied.plan_drift(applied, PLAN, [dict(r, purpose='tunnel') for r in ORIGIN_RULES])['gone'] == 2
