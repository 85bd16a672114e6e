# -*- coding: utf-8 -*-
"""firewalld_egress's pure functions, and its transaction against a fake firewalld (rollback, not running)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request as er
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import firewalld_policy
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_transaction, firewalld_apply, firewalld_client
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.firewalld_client import Firewalld

RULES = [
    {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32', '198.51.100.12/31'], 'ipv6': ['2001:db8:e::11/128']},
    {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32', '198.51.100.12/31'], 'ipv6': ['2001:db8:e::11/128']},
    {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32'], 'ipv6': []},
]


def params(**overrides):
    base = {'name': 'tunnelwall', 'rules': RULES, 'default_deny': False, 'dns_servers': None, 'extra_allow': [], 'state': 'present'}
    base.update(overrides)
    return base


def desired_state(name, rules, default_deny=False, nameservers=(), extra_allow=None, **options):
    """firewalld_policy's render of the Request these options make (egress_request, the one validator)."""
    request = er.build(dict(options, name=name, rules=rules, default_deny=default_deny, extra_allow=extra_allow), 'firewalld')
    return firewalld_policy.desired_state(request, nameservers)


def rules_of_xml(text):
    """A policy file's rules as rich-rule text, read with the standard library's XML parser (the test's own reader)."""
    rules = []
    for rule in ET.fromstring(text).iter('rule'):
        parts = ['rule'] + ['%s="%s"' % (key, rule.get(key)) for key in ('priority', 'family') if rule.get(key)]
        for element in rule:
            if element.tag in ('accept', 'reject', 'drop'):
                action = element.tag
            else:
                parts.append(' '.join([element.tag] + ['%s="%s"' % item for item in element.attrib.items()]))
        rules.append(' '.join(parts + [action]))
    return rules


def test_rules_render_in_firewalld_canonical_form():
    assert firewalld_policy.render_rule(firewalld_policy.allow_rule('ipv4', 'ipset', 'tw-tunnel-v4', 7844, 'tcp')) == \
        'rule family="ipv4" destination ipset="tw-tunnel-v4" port port="7844" protocol="tcp" accept'
    assert firewalld_policy.render_rule(firewalld_policy.allow_rule('ipv6', 'address', '2001:db8:e::253', 53, 'udp')) == \
        'rule family="ipv6" destination address="2001:db8:e::253" port port="53" protocol="udp" accept'
    assert firewalld_policy.render_rule(firewalld_policy.icmp_rule('ipv6', 'neighbour-solicitation')) == \
        'rule family="ipv6" icmp-type name="neighbour-solicitation" accept'
    assert firewalld_policy.render_rule(firewalld_policy.reject_rule()) == 'rule priority="32767" reject'


def test_policy_xml_reads_back_to_the_same_rules():
    rules = desired_state('tw', RULES, default_deny=True, nameservers=['203.0.113.53'])['rules']
    text = firewalld_policy.object_xml(firewalld_policy.Policy(rules))
    assert '<ingress-zone name="HOST"/>' in text and '<egress-zone name="ANY"/>' in text and 'target="CONTINUE"' in text
    assert rules_of_xml(text) == [firewalld_policy.render_rule(r) for r in rules]
    ipset = firewalld_policy.object_xml(firewalld_policy.IpSet('inet6', ['2001:db8::/64']))
    assert '<option name="family" value="inet6"/>' in ipset and '<entry>2001:db8::/64</entry>' in ipset


def test_desired_state_one_ipset_per_purpose_and_family():
    desired = desired_state('tw', RULES)
    assert desired['policy'] == 'tw-egress'
    assert desired['ipsets'] == {
        'tw-tunnel-v4': firewalld_policy.IpSet('inet', ['198.51.100.11', '198.51.100.12/31']),
        'tw-tunnel-v6': firewalld_policy.IpSet('inet6', ['2001:db8:e::11']),
        'tw-api-v4': firewalld_policy.IpSet('inet', ['198.51.100.80']),
    }
    rendered = [firewalld_policy.render_rule(r) for r in desired['rules']]
    assert len(rendered) == 5 and 'rule priority="32767" reject' not in rendered
    assert 'rule family="ipv6" destination ipset="tw-tunnel-v6" port port="7844" protocol="udp" accept' in rendered


def test_overlapping_cidrs_are_merged_and_differing_destinations_split_the_ipset():
    rules = [{'purpose': 'extra', 'protocol': 'tcp', 'port': 443, 'ipv4': ['203.0.113.0/25', '203.0.113.128/25', '203.0.113.7/32'], 'ipv6': []},
             {'purpose': 'extra', 'protocol': 'tcp', 'port': 22, 'ipv4': ['203.0.113.9/32'], 'ipv6': []}]
    desired = desired_state('tw', rules)
    assert desired['ipsets'] == {'tw-extra-tcp443-v4': firewalld_policy.IpSet('inet', ['203.0.113.0/24']),
                                 'tw-extra-tcp22-v4': firewalld_policy.IpSet('inet', ['203.0.113.9'])}


def test_default_deny_adds_dns_ndp_and_the_reject_last():
    desired = desired_state('tw', RULES, default_deny=True, nameservers=['127.0.0.53', '203.0.113.53', 'fe80::1'],
                            extra_allow=[{'protocol': 'udp', 'port': 123, 'destinations': ['203.0.113.123', '203.0.113.122/31']}],
                            allow_dhcp=False, allow_mld=False)
    rendered = [firewalld_policy.render_rule(r) for r in desired['rules']]
    assert rendered[-1] == 'rule priority="32767" reject'
    assert 'rule family="ipv4" destination address="203.0.113.53" port port="53" protocol="tcp" accept' in rendered
    assert 'rule family="ipv6" destination address="fe80::1" port port="53" protocol="udp" accept' in rendered
    assert not any('127.0.0.53' in r for r in rendered)  # loopback leaves before any policy
    assert 'rule family="ipv4" destination address="203.0.113.122/31" port port="123" protocol="udp" accept' in rendered
    assert sum('icmp-type' in r for r in rendered) == 3
    # Without the host services (allow_dhcp and allow_mld off, allow_metadata off by default): no such rule.
    assert not any('source-port' in r or 'ipv6-icmp' in r or '169.254.169.254' in r for r in rendered)


SERVICES = {'allow_dhcp': True, 'allow_mld': True, 'allow_metadata': True}
DHCP4 = 'rule family="ipv4" source-port port="68" protocol="udp" accept'
DHCP6 = 'rule family="ipv6" source-port port="546" protocol="udp" accept'
MLD = 'rule family="ipv6" destination address="ff00::/8" protocol value="ipv6-icmp" accept'
META4 = 'rule family="ipv4" destination address="169.254.169.254" port port="80" protocol="tcp" accept'
META6 = 'rule family="ipv6" destination address="fd00:ec2::254" port port="80" protocol="tcp" accept'


def test_host_services_render_as_rich_rules_before_the_reject():
    rendered = [firewalld_policy.render_rule(r) for r in desired_state('tw', RULES, True, ['203.0.113.53'], [], **SERVICES)['rules']]
    for rule in (DHCP4, DHCP6, MLD, META4, META6):
        assert rendered.count(rule) == 1
        assert rendered.index(rule) < rendered.index('rule priority="32767" reject')
    assert rendered[-1] == 'rule priority="32767" reject'


@pytest.mark.parametrize('services, present, absent', [
    ({'allow_dhcp': True, 'allow_mld': False}, [DHCP4, DHCP6], [MLD, META4, META6]),
    ({'allow_mld': True, 'allow_dhcp': False}, [MLD], [DHCP4, DHCP6, META4]),
    ({'allow_metadata': True, 'allow_dhcp': False, 'allow_mld': False}, [META4, META6], [DHCP4, MLD]),
    ({'allow_dhcp': False, 'allow_mld': False, 'allow_metadata': False}, [], [DHCP4, DHCP6, MLD, META4, META6]),
])
def test_each_host_service_adds_only_its_own_rules(services, present, absent):
    rendered = [firewalld_policy.render_rule(r) for r in desired_state('tw', RULES, True, [], [], **services)['rules']]
    assert all(rule in rendered for rule in present)
    assert not any(rule in rendered for rule in absent)


def test_host_services_need_a_default_deny():
    rendered = [firewalld_policy.render_rule(r) for r in desired_state('tw', RULES, False, [], [], **SERVICES)['rules']]
    assert not any(rule in rendered for rule in (DHCP4, DHCP6, MLD, META4, META6))


def test_host_service_rules_survive_the_policy_file_round_trip():
    # A reload reads the policy back from its XML: source-port and protocol elements must come back the same.
    rules = desired_state('tw', RULES, True, [], [], **SERVICES)['rules']
    text = firewalld_policy.object_xml(firewalld_policy.Policy(rules))
    assert '<source-port port="68" protocol="udp"/>' in text and '<protocol value="ipv6-icmp"/>' in text
    assert rules_of_xml(text) == [firewalld_policy.render_rule(r) for r in rules]


# One validator (egress_request) for every backend, plus what only firewalld cannot render (firewalld_policy.render_problem).
@pytest.mark.parametrize('overrides, expected', [
    ({'name': ''}, "name='': expected ASCII letters"),
    ({'name': 'tw egress'}, "name='tw egress': expected ASCII"),
    ({'name': 'twelve-chars'}, "name='twelve-chars': at most 11 characters"),
    ({'name': 'tw/x'}, "name='tw/x'"),
    # Whole strings only: a trailing newline is refused (egress_request's patterns, shared).
    ({'name': 'tw\n'}, "name='tw\\n': expected ASCII"),
    ({'rules': [dict(RULES[0], purpose='tunnel\n')]}, "rules[0].purpose='tunnel\\n'"),
    ({'rules': [dict(RULES[0], port=0)]}, 'rules[0].port=0: expected a port number'),
    ({'rules': [dict(RULES[0], port=70000)]}, 'rules[0].port=70000'),
    ({'rules': [dict(RULES[0], protocol='icmp')]}, "rules[0].protocol='icmp': expected one of tcp, udp"),
    ({'rules': [dict(RULES[0], purpose='Tunnel!')]}, "rules[0].purpose='Tunnel!'"),
    ({'rules': [RULES[0], dict(RULES[1], ipv4=['198.51.100.300/32'])]}, "rules[1].ipv4[0]='198.51.100.300/32': not an IPv4"),
    ({'rules': [dict(RULES[0], ipv4=['198.51.100.11/24'])]}, "rules[0].ipv4[0]='198.51.100.11/24': host bits set"),
    ({'rules': [dict(RULES[0], ipv4=['2001:db8::1/128'])]}, "rules[0].ipv4[0]='2001:db8::1/128': an IPv6 destination in the ipv4 list"),
    ({'rules': [dict(RULES[0], ipv6=['198.51.100.1'])]}, "rules[0].ipv6[0]='198.51.100.1': an IPv4 destination in the ipv6 list"),
    ({'rules': [dict(RULES[0], ipv4='198.51.100.1')]}, "rules[0].ipv4='198.51.100.1': expected a list"),
    ({'dns_servers': ['dns.example.org']}, "dns_servers[0]='dns.example.org': not an IPv4 or IPv6 address"),
    ({'extra_allow': [{'protocol': 'tcp', 'port': 25, 'destinations': []}]}, 'extra_allow[0].destinations=[]: expected at least one'),
    ({'extra_allow': [{'protocol': 'tcp', 'port': 25, 'destinations': ['mail.example.org']}]}, "extra_allow[0].destinations[0]='mail.example.org'"),
    ({'extra_allow': [{'protocol': 'sctp', 'port': 25, 'destinations': ['203.0.113.1']}]}, "extra_allow[0].protocol='sctp'"),
    ({'rules': [dict(RULES[0], purpose='a_long_purpose12')]}, "ipset name 'tunnelwall-a_long_purpose12-tcp7844-v4' would exceed 31"),
    ({'default_deny': True, 'rules': [RULES[2]]}, 'default_deny=True: no tunnel destination'),
])
def test_bad_input_names_option_and_value(overrides, expected):
    try:
        problem = firewalld_policy.render_problem(er.build(params(**overrides), 'firewalld'))
    except er.RequestError as error:
        problem = str(error)
    assert problem is not None and expected in problem, problem


def test_good_input_passes():
    assert firewalld_policy.render_problem(er.build(params(default_deny=True, dns_servers=['203.0.113.53', 'fe80::1']), 'firewalld')) is None
    assert firewalld_policy.render_problem(er.build(params(name='a_b-1', rules=[], state='absent'), 'firewalld')) is None


def test_ownership_is_by_name_pattern_only():
    names = ['tw-tunnel-v4', 'tw-api-v6', 'tw-extra-tcp443-v4', 'tw-notes', 'tw-x-tunnel-v4', 'twx-tunnel-v4', 'tw-Tunnel-v4', 'other']
    assert firewalld_policy.owned_ipsets('tw', names) == ['tw-api-v6', 'tw-extra-tcp443-v4', 'tw-tunnel-v4']
    assert firewalld_policy.owned_file('tw', 'tw-egress.xml') and firewalld_policy.owned_file('tw', 'tw-tunnel-v4.xml.old')
    assert not firewalld_policy.owned_file('tw', 'tw-egress-2.xml') and not firewalld_policy.owned_file('tw', 'tw-tunnel-v4.xml~')


DBUS_POLICY = '''method return time=1795778927.151399 sender=:1.0 -> destination=:1.12 serial=730 reply_serial=2
   array [
      dict entry(
         string "target"
         variant             string "CONTINUE"
      )
      dict entry(
         string "masquerade"
         variant             boolean false
      )
      dict entry(
         string "rich_rules"
         variant             array [
               string "rule family="ipv4" destination ipset="tw-tunnel-v4" port port="7844" protocol="tcp" accept"
               string "rule priority="32767" reject"
            ]
      )
      dict entry(
         string "priority"
         variant             int32 -1
      )
      dict entry(
         string "ingress_zones"
         variant             array [
               string "HOST"
            ]
      )
      dict entry(
         string "egress_zones"
         variant             array [
               string "ANY"
            ]
      )
   ]
'''

DBUS_IPSET = '''method return time=1795778932.302012 sender=:1.0 -> destination=:1.13 serial=734 reply_serial=2
   struct {
      string ""
      string ""
      string ""
      string "hash:net"
      array [
         dict entry(
            string "family"
            string "inet"
         )
      ]
      array [
         string "198.51.100.11/32"
         string "198.51.100.0/30"
      ]
   }
'''


def test_parse_dbus_send_output():
    settings = firewalld_client.parse_dbus_reply(DBUS_POLICY)
    assert settings['priority'] == -1 and settings['masquerade'] is False
    policy = firewalld_client.policy_from_settings(settings)
    assert policy == {'target': 'CONTINUE', 'ingress_zones': ['HOST'], 'egress_zones': ['ANY'], 'description': '', 'rich_rules': [
        'rule family="ipv4" destination ipset="tw-tunnel-v4" port port="7844" protocol="tcp" accept', 'rule priority="32767" reject']}
    ipset = firewalld_client.ipset_from_settings(firewalld_client.parse_dbus_reply(DBUS_IPSET))
    assert ipset == {'type': 'hash:net', 'family': 'inet', 'entries': ['198.51.100.11/32', '198.51.100.0/30'], 'description': ''}
    assert firewalld_client.parse_dbus_reply('method return time=1 sender=:1.0\n   array [\n   ]\n') == []
    assert firewalld_client.parse_dbus_reply('method return\n   object path "/org/fedoraproject/FirewallD1/config/ipset/0"\n') == \
        '/org/fedoraproject/FirewallD1/config/ipset/0'
    assert firewalld_client.parse_dbus_reply('method return\n   variant       string "RUNNING"\n') == 'RUNNING'
    with pytest.raises(ValueError):
        firewalld_client.parse_dbus_reply('method return\n   unix_fd 3\n')


def layer(desired, rules=None, entries=None):
    """A layer holding ``desired`` (optionally with other rules or entries)."""
    policy = {'target': 'CONTINUE', 'ingress_zones': ['HOST'], 'egress_zones': ['ANY'],
              'rich_rules': rules if rules is not None else [firewalld_policy.render_rule(r) for r in desired['rules']]}
    ipsets = {n: {'type': 'hash:net', 'family': s.family, 'entries': list((entries or {}).get(n, s.entries))}
              for n, s in desired['ipsets'].items()}
    return {'policy': policy, 'ipsets': ipsets}


EMPTY = {'policy': None, 'ipsets': {}}


def test_plan_first_run_writes_files_and_reloads_once():
    desired = desired_state('tw', RULES, default_deny=True, nameservers=['203.0.113.53'])
    steps = firewalld_policy.plan_present(desired, EMPTY, EMPTY, persist=True)
    assert [s[0] for s in steps] == ['write_file'] * 4 + ['reload']
    assert sorted(s[1] for s in steps[:4]) == [
        'ipsets/tw-api-v4.xml', 'ipsets/tw-tunnel-v4.xml', 'ipsets/tw-tunnel-v6.xml', 'policies/tw-egress.xml']


def test_plan_is_empty_when_both_layers_hold_the_desired_state():
    desired = desired_state('tw', RULES, default_deny=True, nameservers=['203.0.113.53'])
    same = layer(desired, entries={'tw-tunnel-v4': ['198.51.100.12/31', '198.51.100.11/32']})  # other spelling, other order
    assert firewalld_policy.plan_present(desired, same, same, persist=True) == []
    assert firewalld_policy.plan_present(desired, same, EMPTY, persist=False) == []


def test_plan_rotation_updates_entries_in_place_in_both_layers():
    desired = desired_state('tw', RULES)
    old = layer(desired, entries={'tw-tunnel-v4': ['198.51.100.11', '198.51.100.9']})
    steps = firewalld_policy.plan_present(desired, old, old, persist=True)
    assert steps == [('set_entries', 'runtime', 'tw-tunnel-v4', ['198.51.100.11', '198.51.100.12/31']),
                     ('set_entries', 'permanent', 'tw-tunnel-v4', ['198.51.100.11', '198.51.100.12/31'])]


def test_plan_default_deny_switched_on_adds_the_reject_after_the_allows():
    before = desired_state('tw', RULES)
    after = desired_state('tw', RULES, default_deny=True, nameservers=['203.0.113.53'])
    steps = firewalld_policy.plan_present(after, layer(before), layer(before), persist=False)
    assert [s[0] for s in steps] == ['add_rules', 'add_rules']
    assert steps[1] == ('add_rules', 'runtime', 'tw-egress', ['rule priority="32767" reject'])
    assert 'rule priority="32767" reject' not in steps[0][3]
    # ... and switched off again: one removal call, in the runtime and the permanent configuration.
    steps = firewalld_policy.plan_present(before, layer(after), layer(after), persist=True)
    assert [s[:2] for s in steps] == [('remove_rules', 'runtime'), ('remove_rules', 'permanent')]


def test_plan_runtime_only_creates_skeletons_then_fills_the_runtime():
    desired = desired_state('tw', RULES)
    steps = firewalld_policy.plan_present(desired, EMPTY, EMPTY, persist=False)
    kinds = [s[0] for s in steps]
    assert kinds[:5] == ['write_file'] * 4 + ['reload']
    assert all('<entry>' not in firewalld_policy.object_xml(s[2]) and '<rule' not in firewalld_policy.object_xml(s[2]) for s in steps[:4])  # empty
    assert kinds[5:] == ['set_entries'] * 3 + ['add_rules']
    assert all(s[1] == 'runtime' for s in steps[5:])


def test_plan_stale_purpose_is_deleted_when_persisting_and_emptied_in_the_runtime():
    full = desired_state('tw', RULES)
    no_api = desired_state('tw', RULES[:2])
    persist = firewalld_policy.plan_present(no_api, layer(full), layer(full), persist=True)
    assert ('remove_file', 'ipsets/tw-api-v4.xml') in persist and persist[-1] == ('reload',)
    runtime = firewalld_policy.plan_present(no_api, layer(full), layer(full), persist=False)
    assert ('set_entries', 'runtime', 'tw-api-v4', []) in runtime
    assert runtime.index(('set_entries', 'runtime', 'tw-api-v4', [])) > [s[0] for s in runtime].index('remove_rules')


def test_plan_revert_and_absent():
    desired = desired_state('tw', RULES)
    skeleton = layer(desired, rules=[], entries={n: [] for n in desired['ipsets']})
    steps = firewalld_policy.plan_revert('tw', layer(desired), skeleton)
    assert sorted(s[1] for s in steps if s[0] == 'remove_file') == [
        'ipsets/tw-api-v4.xml', 'ipsets/tw-tunnel-v4.xml', 'ipsets/tw-tunnel-v6.xml', 'policies/tw-egress.xml']
    assert steps[-1] == ('reload',)
    assert firewalld_policy.plan_revert('tw', layer(desired), layer(desired)) == []
    assert firewalld_policy.plan_absent(EMPTY, EMPTY, []) == []
    assert firewalld_policy.plan_absent(layer(desired), layer(desired), ['policies/tw-egress.xml']) == [
        ('remove_file', 'policies/tw-egress.xml'), ('reload',)]


def test_summarize():
    before = {'policy': {'target': 'CONTINUE', 'rich_rules': ['a', 'b']}, 'ipsets': {'s': ['198.51.100.1', '198.51.100.2']}}
    after = {'policy': {'target': 'CONTINUE', 'rich_rules': ['b', 'c']}, 'ipsets': {'s': ['198.51.100.2', '198.51.100.3'], 't': ['::1']}}
    added, removed = firewalld_policy.summarize(before, after)
    assert added == {'entries': {'s': ['198.51.100.3'], 't': ['::1']}, 'rich_rules': ['c']}
    assert removed == {'entries': {'s': ['198.51.100.1']}, 'rich_rules': ['a']}


def test_allow_list_is_the_shape_every_backend_returns():
    desired = desired_state('tw', RULES, default_deny=True, nameservers=['203.0.113.53'],
                            extra_allow=[{'protocol': 'udp', 'port': 123, 'destinations': ['203.0.113.123']}],
                            allow_metadata=True)
    rules = firewalld_policy.allow_list(firewalld_policy.desired_view(desired), 'tw')
    keys = {(r['purpose'], r['family'], r['protocol'], r['port'], r['destination']) for r in rules}
    assert ('tunnel', 'ipv4', 'udp', 7844, '198.51.100.12/31') in keys and ('api', 'ipv4', 'tcp', 443, '198.51.100.80') in keys
    assert ('dns', 'ipv4', 'tcp', 53, '203.0.113.53') in keys and ('extra', 'ipv4', 'udp', 123, '203.0.113.123') in keys
    assert ('metadata', 'ipv4', 'tcp', 80, '169.254.169.254') in keys and ('metadata', 'ipv6', 'tcp', 80, 'fd00:ec2::254') in keys
    # Host services without a destination (DHCP, MLD, NDP) and the reject are not allow-to-destination rules.
    assert len(rules) == 2 * 3 + 1 + 2 + 1 + 2
    assert firewalld_policy.allow_list({'policy': None, 'ipsets': {}}, 'tw') == []


class FakeFirewalld:
    """Answers dbus-send and firewall-cmd like firewalld would, failing the command named by ``fail``."""

    def __init__(self, fail=None, state='RUNNING'):
        self.fail = fail
        self.state = state
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        joined = ' '.join(argv)
        if self.fail and self.fail in joined:
            return 1, '', 'Error: simulated failure of %s' % self.fail
        if 'Properties.Get' in joined:
            if self.state is None:
                return 1, '', 'Error org.freedesktop.DBus.Error.ServiceUnknown: The name org.fedoraproject.FirewallD1 was not provided'
            value = self.state if 'string:state' in joined else '1.3.3'
            return 0, 'method return\n   variant       string "%s"\n' % value, ''
        return 0, 'method return\n', ''


def test_transaction_failure_restores_the_files_and_reloads(tmp_path):
    config = tmp_path / 'firewalld'
    (config / 'ipsets').mkdir(parents=True)
    (config / 'policies').mkdir()
    (config / 'ipsets' / 'tw-tunnel-v4.xml').write_text('old tunnel\n')
    (config / 'ipsets' / 'mine.xml').write_text('the user\'s\n')
    fake = FakeFirewalld(fail='--add-rich-rule')
    firewalld = Firewalld(fake, str(config))
    steps = [firewalld_policy.write_file('ipsets/tw-tunnel-v4.xml', firewalld_policy.IpSet('inet', ['198.51.100.1'])),
             firewalld_policy.write_file('policies/tw-egress.xml', firewalld_policy.Policy([])),
             firewalld_policy.add_rules('runtime', 'tw-egress', ['rule priority="32767" reject']), firewalld_policy.reload_step()]
    with pytest.raises(egress_transaction.EgressError) as error:
        firewalld.transaction('tw', steps)
    assert 'rolled back' in str(error.value) and 'simulated failure' in str(error.value)
    assert (config / 'ipsets' / 'tw-tunnel-v4.xml').read_text() == 'old tunnel\n'
    assert not (config / 'policies' / 'tw-egress.xml').exists()
    assert (config / 'ipsets' / 'mine.xml').read_text() == 'the user\'s\n'
    assert fake.calls[-1][-1].endswith('.reload')  # the rollback reloads: runtime = the restored permanent config
    assert not [f for f in os.listdir(config / 'ipsets') if f.startswith('.tunnelwall.')]


class EmptyFirewalld(FakeFirewalld):
    """A running firewalld without a policy, ipset or zone of its own: every listing is empty."""

    def __call__(self, argv):
        listings = ('getPolicyNames', 'getIPSetNames', 'getPolicies', 'getIPSets', 'getZones')
        if argv[0] == 'dbus-send' and argv[6].rsplit('.', 1)[-1] in listings:
            self.calls.append(argv)
            return 0, 'method return\n   array [\n   ]\n', ''
        return super().__call__(argv)


def test_a_first_apply_writes_whole_files_reloads_once_and_leaves_the_commit_nothing(tmp_path):
    # Issue 18's figure: new objects go in complete with one reload - no firewall-cmd, nothing left for the commit.
    fake = EmptyFirewalld()
    request = er.build(dict(name='tw', rules=RULES, default_deny=True), 'firewalld')
    backend = firewalld_apply.FirewalldBackend(request, ['203.0.113.53'], fake, config_dir=str(tmp_path))
    assert backend.plan() == {'changed': True}
    backend.apply()
    applied = list(fake.calls)
    backend.commit()
    assert fake.calls == applied
    assert not [c for c in fake.calls if c[0] == 'firewall-cmd']
    assert [c[6].rsplit('.', 1)[-1] for c in fake.calls].count('reload') == 1
    assert 'priority="32767"' in (tmp_path / 'policies' / 'tw-egress.xml').read_text()
    assert '<entry>198.51.100.12/31</entry>' in (tmp_path / 'ipsets' / 'tw-tunnel-v4.xml').read_text()
    assert str(tmp_path / 'policies' / 'tw-egress.xml') in backend.files()  # the record covers what was written


def test_firewalld_not_running_is_a_clear_error():
    with pytest.raises(egress_transaction.EgressError, match='firewalld is not running or cannot be reached over D-Bus'):
        Firewalld(FakeFirewalld(state=None)).state()
    with pytest.raises(egress_transaction.EgressError, match=r'firewalld is not running \(state FAILED\)'):
        Firewalld(FakeFirewalld(state='FAILED')).state()
    assert Firewalld(FakeFirewalld()).state() == ('RUNNING', '1.3.3')


class IpsetFirewalld:
    """A firewalld holding ipsets, reached through commands the kernel really starts (``true`` with the same
    arguments), so an argument over Linux's 128 KiB limit fails here as it does on a host (E2BIG)."""

    def __init__(self, entries):
        self.sets = {'runtime': list(entries), 'permanent': list(entries)}
        self.calls = []

    def __call__(self, argv):
        self.calls.append([a if len(a) < 200 else '%s... (%d bytes)' % (a[:40], len(a)) for a in argv])
        try:
            subprocess.run(['true'] + argv[1:], check=True)
        except OSError as error:
            return 126, '', 'cannot run %s: %s' % (argv[0], error.strerror)
        layer = 'permanent' if '--permanent' in argv or '/config/' in ' '.join(argv[:7]) else 'runtime'
        if argv[0] == 'firewall-cmd':
            option, path = argv[-1].split('=', 1)
            with open(path) as stream:
                items = stream.read().split()
            assert oct(os.stat(path).st_mode & 0o777) == '0o600'
            if option == '--add-entries-from-file':
                self.sets[layer] += [e for e in items if e not in self.sets[layer]]
            else:
                self.sets[layer] = [e for e in self.sets[layer] if e not in items]
            return 0, '', ''
        method = argv[6]
        if method.endswith('.getIPSetByName'):
            return 0, 'method return\n   object path "/org/fedoraproject/FirewallD1/config/ipset/1"\n', ''
        if method.endswith('getEntries'):
            return 0, 'method return\n   array [\n%s   ]\n' % ''.join('      string "%s"\n' % e for e in self.sets[layer]), ''
        if method.endswith('setEntries'):
            self.sets[layer] = argv[-1][len('array:string:'):].split(',')
            return 0, 'method return\n', ''
        raise AssertionError(argv)


def big_set(count, start=0):
    # Every other /128, so that no two collapse into a shorter prefix.
    return [str(ipaddress.ip_address('2001:db8:100::') + 2 * n) for n in range(start, start + count)]


@pytest.mark.parametrize('layer', ['runtime', 'permanent'])
def test_a_set_too_large_for_one_argument_loads_from_files_in_both_layers(layer):
    # Issue 13: ~9,500 IPv4 /24s (or ~7,000 IPv6 /128s) in one 'array:string:...' argument exceed 128 KiB: E2BIG.
    old = big_set(10500)
    fake = IpsetFirewalld(old)
    firewalld = Firewalld(fake)
    new = big_set(10500, start=3)  # three stale at the start, three new at the end
    firewalld.apply([firewalld_policy.set_entries(layer, 'tw-tunnel-v6', new)])
    assert fake.sets[layer] == old[3:] + new[-3:] and sorted(fake.sets[layer]) == sorted(new)
    changing = [c for c in fake.calls if c[0] == 'firewall-cmd']
    flag = ['--permanent'] if layer == 'permanent' else []
    assert [c[:len(flag) + 2] for c in changing] == [['firewall-cmd'] + flag + ['--ipset=tw-tunnel-v6']] * 2
    assert [c[-1].split('=')[0] for c in changing] == ['--add-entries-from-file', '--remove-entries-from-file']
    assert not [c for c in fake.calls if 'setEntries' in ' '.join(c)]
    assert not [f for f in os.listdir('/tmp') if f.startswith('tunnelwall-tw-tunnel-v6-')]  # the files are gone
    # Nothing to add or remove: no command at all.
    fake.calls.clear()
    firewalld.apply([firewalld_policy.set_entries(layer, 'tw-tunnel-v6', list(reversed(new)))])
    assert not [c for c in fake.calls if c[0] == 'firewall-cmd']


def test_a_small_set_is_still_replaced_atomically_with_set_entries():
    fake = IpsetFirewalld(['198.51.100.1'])
    Firewalld(fake).apply([firewalld_policy.set_entries('runtime', 'tw-tunnel-v4', ['198.51.100.2', '198.51.100.4'])])
    assert fake.sets['runtime'] == ['198.51.100.2', '198.51.100.4']
    assert [c[6].rsplit('.', 1)[1] for c in fake.calls] == ['setEntries']


@pytest.mark.parametrize('args, deprecated', [
    ({'rules': [], 'name': 'tw', 'permanent': False}, True),
    ({'name': 'tw', 'state': 'reverted'}, True),
    ({'rules': [], 'name': 'tw'}, False),
    ({'name': 'tw', 'state': 'absent', 'permanent': False}, False),  # ignored with absent: nothing to warn about
])
def test_permanent_false_and_state_reverted_are_deprecated(tmp_path, monkeypatch, args, deprecated):
    from ansible.module_utils.basic import AnsibleModule
    from tests.support.module_runner import run_module
    said = []
    monkeypatch.setattr(AnsibleModule, 'deprecate', lambda self, msg, **kwargs: said.append((msg, kwargs)))
    monkeypatch.setenv('PATH', str(tmp_path))  # no dbus-send: the run stops right after the deprecation, changing nothing
    result = run_module('firewalld_egress', args)
    assert result['failed'] and 'dbus-send' in result['msg'], result
    assert [kwargs.get('version') for msg, kwargs in said if 'state=reverted are deprecated' in msg] == (
        ['1.0.0'] if deprecated else []), said
