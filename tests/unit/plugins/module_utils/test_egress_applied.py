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
