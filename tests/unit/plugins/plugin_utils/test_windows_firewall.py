# -*- coding: utf-8 -*-
"""What win_firewall_egress's action plugin hands the Windows host, for real."""

from __future__ import annotations

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall

RULES = [
    {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.12/31', '198.51.100.11/32'], 'ipv6': ['2001:db8:e::11/128']},
    {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32'], 'ipv6': []},
    {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32'], 'ipv6': []},
]


def params(**values):
    base = {'rules': RULES, 'name': 'tunnelwall cloudflared', 'default_deny': False, 'profiles': ['Domain', 'Private', 'Public'],
            'allow_dns': True, 'dns_servers': [], 'extra_allow': [], 'state': 'present'}
    base.update(values)
    return base


def test_one_rule_per_purpose_protocol_and_port_with_sorted_canonical_addresses():
    prepared = windows_firewall.prepare(params())
    assert [r['display_name'] for r in prepared['rules']] == [
        'tunnelwall cloudflared: api tcp/443', 'tunnelwall cloudflared: tunnel tcp/7844', 'tunnelwall cloudflared: tunnel udp/7844']
    tcp = prepared['rules'][1]
    assert tcp['addresses'] == ['198.51.100.11/32', '198.51.100.12/31', '2001:db8:e::11/128']
    assert prepared['group'] == 'tunnelwall cloudflared' and prepared['state'] == 'present'


def test_default_deny_adds_dns_to_the_given_resolvers():
    prepared = windows_firewall.prepare(params(default_deny=True, dns_servers=['198.51.100.253', '2001:db8:e::253']))
    dns = [r for r in prepared['rules'] if r['purpose'] == 'dns']
    assert [(r['protocol'], r['port'], r['addresses']) for r in dns] == [
        ('tcp', 53, ['198.51.100.253/32', '2001:db8:e::253/128']), ('udp', 53, ['198.51.100.253/32', '2001:db8:e::253/128'])]


def test_extra_allow_and_absent():
    prepared = windows_firewall.prepare(params(extra_allow=[{'protocol': 'tcp', 'port': 22, 'destinations': ['203.0.113.0/24']}]))
    extra = [r for r in prepared['rules'] if r['purpose'] == 'extra']
    assert [(r['display_name'], r['addresses']) for r in extra] == [('tunnelwall cloudflared: extra tcp/22', ['203.0.113.0/24'])]
    assert windows_firewall.prepare(params(state='absent'))['rules'] == []


@pytest.mark.parametrize('text, canonical', [
    ('198.51.100.7', '198.51.100.7/32'), ('198.51.100.0/24', '198.51.100.0/24'),
    ('198.51.100.0/255.255.255.0', '198.51.100.0/24'), ('2001:db8::11', '2001:db8::11/128'),
])
def test_windows_address_forms_compare_equal(text, canonical):
    assert windows_firewall.canonical_address(text) == canonical


@pytest.mark.parametrize('values, message', [
    ({'rules': [dict(RULES[0], port=0)]}, 'rules[0]: port 0'),
    ({'rules': [dict(RULES[0], port='https')]}, "rules[0]: port 'https'"),
    ({'rules': [dict(RULES[0], protocol='icmp')]}, "rules[0]: protocol 'icmp'"),
    ({'rules': [dict(RULES[0], ipv4=['198.51.100.1/24'])]}, "rules[0]: '198.51.100.1/24'"),
    ({'rules': [dict(RULES[0], ipv4=[], ipv6=[])]}, 'rules[0]: no ipv4 or ipv6 destinations'),
    ({'name': 'a|b'}, "name: 'a|b'"),
    ({'profiles': ['Public', 'Office']}, 'profiles: Office'),
    ({'default_deny': True}, 'allow_dns: no dns_servers'),
    ({'default_deny': True, 'allow_dns': False, 'rules': [RULES[2]]}, 'default_deny: refusing'),
    ({'extra_allow': [{'protocol': 'tcp', 'port': 22, 'destinations': ['nowhere']}]}, "extra_allow[0]: 'nowhere'"),
])
def test_bad_input_is_named(values, message):
    with pytest.raises(windows_firewall.RuleError) as error:
        windows_firewall.prepare(params(**values))
    assert message in str(error.value)
