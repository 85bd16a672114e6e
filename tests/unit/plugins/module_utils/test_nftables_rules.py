# -*- coding: utf-8 -*-
"""nftables_rules: the request as one nft table (pure; tests/integration_lab/test_nftables_backend.py loads it into nft)."""

from __future__ import annotations

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import nftables_rules

TUNNEL = [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.41.192.0/24', '198.41.192.7', '198.41.193.0/24'],
           'ipv6': ['2606:4700:a0::/48']},
          {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.41.200.0/24'], 'ipv6': []}]


def request(**params):
    return egress_request.build(dict({'rules': TUNNEL}, **params), 'nftables')


def rules_of(req, nameservers=()):
    return nftables_rules.chain_rules(req, nftables_rules.allowances(req, nameservers))


def test_one_interval_set_per_label_protocol_port_and_family_with_overlaps_collapsed():
    sets = nftables_rules.allowances(request(), ())
    assert [nftables_rules.set_name(s) for s in sets] == ['tunnel_udp_7844_v4', 'tunnel_udp_7844_v6', 'tunnel_tcp_7844_v4']
    # .7 lies inside the first /24 and the two /24s are adjacent: one /23, as an interval set needs (no overlaps).
    assert sets[0].destinations == ('198.41.192.0/23',)
    assert sets[2].destinations == ('198.41.200.0/24',)


def test_a_host_address_is_written_without_its_prefix_length():
    req = request(rules=[{'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32'],
                          'ipv6': ['2001:db8::80/128']}])
    assert [s.destinations for s in nftables_rules.allowances(req, ())] == [('198.51.100.80',), ('2001:db8::80',)]


def test_without_default_deny_only_accepts_and_no_dns_or_host_services():
    req = request()
    rules = rules_of(req, egress_request.nameservers(req, ['198.51.100.253'], []))
    assert rules == ['ip daddr @tunnel_udp_7844_v4 udp dport 7844 accept', 'ip6 daddr @tunnel_udp_7844_v6 udp dport 7844 accept',
                     'ip daddr @tunnel_tcp_7844_v4 tcp dport 7844 accept']


def test_default_deny_lets_the_host_itself_out_first_and_rejects_last():
    req = request(default_deny=True, allow_metadata=True)
    sets = nftables_rules.allowances(req, ['198.51.100.253', '2001:db8:e::253'])
    assert [nftables_rules.set_name(s) for s in sets][:6] == ['dns_udp_53_v4', 'dns_udp_53_v6', 'dns_tcp_53_v4', 'dns_tcp_53_v6',
                                                              'metadata_tcp_80_v4', 'metadata_tcp_80_v6']
    rules = nftables_rules.chain_rules(req, sets)
    assert rules[:4] == ['oifname "lo" accept', 'ct state established,related accept',
                         'tcp flags & syn == 0 ct state new accept',
                         'icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept']
    assert 'icmpv6 type { 131, 132, 143 } accept' in rules  # MLDv1 report and done, MLDv2 report
    assert 'meta nfproto ipv4 udp sport 68 udp dport 67 accept' in rules
    assert 'meta nfproto ipv6 udp sport 546 udp dport 547 accept' in rules
    assert rules[-2:] == ['meta l4proto tcp reject with tcp reset', 'reject with icmpx type admin-prohibited']


def test_host_services_follow_their_options():
    rules = rules_of(request(default_deny=True, allow_dhcp=False, allow_mld=False), ['198.51.100.253'])
    assert not [r for r in rules if 'mld' in r or 'sport' in r]
    assert not [s for s in nftables_rules.allowances(request(default_deny=True), ['198.51.100.253']) if s.label == 'metadata']


def test_extra_allow_and_a_rule_of_the_same_set_share_it():
    req = request(extra_allow=[{'protocol': 'tcp', 'port': 3128, 'destinations': ['203.0.113.10', '2001:db8::10']}],
                  rules=TUNNEL + [{'purpose': 'extra', 'protocol': 'tcp', 'port': 3128, 'ipv4': ['203.0.113.11']}])
    extra = [s for s in nftables_rules.allowances(req, ()) if s.label == 'extra']
    assert [(nftables_rules.set_name(s), s.destinations) for s in extra] == [('extra_tcp_3128_v4', ('203.0.113.10/31',)),
                                                                             ('extra_tcp_3128_v6', ('2001:db8::10',))]


def test_the_script_replaces_the_whole_table_and_absent_renders_nothing():
    req = request(default_deny=True, dns_servers=['198.51.100.253'])
    script = nftables_rules.render(req, nftables_rules.allowances(req, ['198.51.100.253']))
    assert script.startswith('table inet tunnelwall\ndelete table inet tunnelwall\ntable inet tunnelwall {\n'
                             '\tcomment "tunnelwall.cloudflared.nftables_egress tunnelwall"\n')
    assert '\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n' in script
    assert script.count('flags interval') == 5
    absent = egress_request.build({'state': 'absent'}, 'nftables')
    assert nftables_rules.render(absent, nftables_rules.allowances(absent, ())) == ''


@pytest.mark.parametrize('name, problem', [('1abc', True), ('a1', False), ('Tunnel-Wall_2', False)])
def test_a_table_name_starts_with_a_letter(name, problem):
    message = nftables_rules.render_problem(request(name=name))
    assert bool(message) == problem
    if problem:
        assert message == "name='1abc': nft table names start with a letter"


def test_paths_and_boot_files():
    paths = nftables_rules.paths('tw', '/etc/nftables.d', '/etc/systemd/system')
    assert paths == nftables_rules.Paths('/etc/nftables.d/tw-egress.nft', '/etc/systemd/system/tunnelwall-nftables-tw.service',
                                         '/etc/systemd/system/sysinit.target.d/tunnelwall-nftables-tw.conf',
                                         '/etc/nftables.d/tunnelwall-pending.json')
    assert nftables_rules.paths('tw', '/etc/nftables.d', None).unit is None
    unit = nftables_rules.unit_text('tw', '/usr/sbin/nft', paths.ruleset)
    assert 'ExecStart=/usr/sbin/nft -f /etc/nftables.d/tw-egress.nft\n' in unit
    assert 'Before=network-pre.target' in unit and 'After=local-fs.target nftables.service' in unit
    assert 'ExecStop' not in unit  # stopping must not open egress
    # It follows nftables.service: a restart (flush ruleset + nftables.conf) restarts it, a reload reloads it.
    assert 'PartOf=nftables.service\n' in unit and 'ReloadPropagatedFrom=nftables.service\n' in unit
    assert 'ExecReload=/usr/sbin/nft -f /etc/nftables.d/tw-egress.nft\n' in unit
    # After the boot check, which may remove a ruleset a reboot left unconfirmed.
    assert 'After=local-fs.target nftables.service tunnelwall-boot-revert.service\n' in unit
    assert 'ConditionPathExists=/etc/nftables.d/tw-egress.nft\n' in unit
    assert nftables_rules.dropin_text('tw', 'tunnelwall-nftables-tw.service').endswith('[Unit]\nWants=tunnelwall-nftables-tw.service\n')


def test_the_restore_is_a_shell_line_of_its_own():
    argv = nftables_rules.restore_command('/usr/sbin/nft', nftables_rules.paths('tw'), 'tw')
    assert argv[:2] == ['/bin/sh', '-c']
    assert argv[3:] == ['tunnelwall-nftables-restore', '/etc/nftables.d/tw-egress.nft', 'tw', '/usr/sbin/nft']


def test_the_sets_of_a_listed_table_are_the_rules_every_backend_reports():
    # `nft -j list table` objects as nftables_apply.comparable() leaves them: sets of addresses, prefixes and ranges.
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_applied, nftables_apply
    before = [{'table': {'family': 'inet', 'name': 'tunnelwall'}},
              {'set': {'family': 'inet', 'name': 'tunnel_udp_7844_v4', 'table': 'tunnelwall', 'type': 'ipv4_addr',
                       'flags': ['interval'], 'elem': ['198.51.100.11', {'prefix': {'addr': '198.51.100.16', 'len': 28}}]}},
              {'set': {'family': 'inet', 'name': 'dns_tcp_53_v6', 'table': 'tunnelwall', 'type': 'ipv6_addr',
                       'elem': ['2001:db8::53']}},
              {'set': {'family': 'inet', 'name': 'not_ours', 'table': 'tunnelwall', 'elem': ['198.51.100.1']}},
              {'chain': {'family': 'inet', 'name': 'output', 'table': 'tunnelwall'}}]
    after = [before[1], {'set': dict(before[2]['set'], elem=[{'range': ['2001:db8::53', '2001:db8::54']}])}]
    rules = nftables_apply.set_rules(before)
    assert rules == [
        {'purpose': 'tunnel', 'family': 'ipv4', 'protocol': 'udp', 'port': 7844, 'destination': '198.51.100.11'},
        {'purpose': 'tunnel', 'family': 'ipv4', 'protocol': 'udp', 'port': 7844, 'destination': '198.51.100.16/28'},
        {'purpose': 'dns', 'family': 'ipv6', 'protocol': 'tcp', 'port': 53, 'destination': '2001:db8::53'}]
    added, removed = egress_applied.rule_changes(rules, nftables_apply.set_rules(after))
    assert [r['destination'] for r in added] == ['2001:db8::53-2001:db8::54']
    assert [r['destination'] for r in removed] == ['2001:db8::53']
    assert nftables_apply.set_rules(None) == []
