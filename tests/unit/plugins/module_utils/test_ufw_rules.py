# -*- coding: utf-8 -*-
"""ufw_egress without a firewall: ufw's file format, reconciliation, validation, policy memory, and the
transaction (backup, apply, rollback) on real files in a temporary directory with stand-in commands."""

from __future__ import annotations

import fcntl
import json
import os
import time

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    dns_client, egress_request, egress_transaction, ufw_apply, ufw_rules)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.ufw_rules import UfwRule

HEAD4 = """*filter
:ufw-user-input - [0:0]
:ufw-user-output - [0:0]
### RULES ###
"""
TAIL4 = """### END RULES ###

### LOGGING ###
-A ufw-after-logging-input -j LOG --log-prefix "[UFW BLOCK] " -m limit --limit 3/min --limit-burst 10
### END LOGGING ###
COMMIT
"""
USER_SSH = """
### tuple ### allow tcp 22 0.0.0.0/0 any 203.0.113.0/30 in comment=74756e6e656c77616c6c206c61623a20636f6e74726f6c6c657220737368
-A ufw-user-input -p tcp --dport 22 -s 203.0.113.0/30 -j ACCEPT
"""
EMPTY4 = HEAD4 + '\n' + TAIL4
EMPTY6 = EMPTY4.replace('ufw-', 'ufw6-')
# Written by `ufw allow out to 198.51.100.11 port 7844 proto udp comment 'tunnelwall:tunnel'` (ufw 0.36.2).
UFW_CLI_V4 = ('### tuple ### allow udp 7844 198.51.100.11 any 0.0.0.0/0 out comment=74756e6e656c77616c6c3a74756e6e656c',
              '-A ufw-user-output -p udp -d 198.51.100.11 --dport 7844 -j ACCEPT')
UFW_CLI_V6 = ('### tuple ### allow udp 7844 2001:db8::11 any ::/0 out comment=74756e6e656c77616c6c3a74756e6e656c',
              '-A ufw6-user-output -p udp -d 2001:db8::11 --dport 7844 -j ACCEPT')

PLAN_RULES = [
    {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32', '198.51.100.12/31'],
     'ipv6': ['2001:db8:e::11/128']},
    {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32'], 'ipv6': []},
    {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32'], 'ipv6': []},
]


def build(**overrides):
    """The module's Request; no DHCP rules (unless asked), no dead-man revert, a short wait for the host-wide lock."""
    options = {'rules': PLAN_RULES, 'allow_dhcp': False, 'confirm_timeout': 0, 'lock_timeout': 1}
    options.update(overrides)
    return egress_request.build(options, 'ufw')


def wanted(nameservers=(), **overrides):
    return ufw_rules.render(build(**overrides), list(nameservers))


def rule(destination, protocol='tcp', port=7844, purpose='tunnel', family='ipv4'):
    return UfwRule(family, protocol, port, destination, 'tunnelwall:' + purpose)


# ---------------------------------------------------------------------------------------------------------------
# rendering and parsing
# ---------------------------------------------------------------------------------------------------------------
def test_render_block_is_byte_identical_to_the_ufw_command_line():
    assert ufw_rules.render_block(rule('198.51.100.11', 'udp')) == UFW_CLI_V4
    assert ufw_rules.render_block(rule('2001:db8::11', 'udp', family='ipv6')) == UFW_CLI_V6


def test_comment_is_the_hex_of_its_utf8_bytes_and_decodes_back():
    assert ufw_rules.hex_comment('tunnelwall:tunnel') == '74756e6e656c77616c6c3a74756e6e656c'
    assert ufw_rules.decode_comment('74756e6e656c77616c6c3a617069') == 'tunnelwall:api'
    assert ufw_rules.hex_comment('tw:é') == '74773ac3a9'
    assert ufw_rules.decode_comment('zz') is None


def test_destinations_are_normalised_as_ufw_writes_them():
    assert ufw_rules.host_form('198.51.100.11/32') == '198.51.100.11'
    assert ufw_rules.host_form('198.51.100.12/31') == '198.51.100.12/31'
    assert ufw_rules.host_form('2001:0db8:000e:0::11/128') == '2001:db8:e::11'
    assert ufw_rules.host_form('2001:db8:e::/64') == '2001:db8:e::/64'


def test_parse_keeps_blocks_comments_and_everything_around_them():
    text = HEAD4 + USER_SSH + '\n' + '\n'.join(UFW_CLI_V4) + '\n\n' + TAIL4
    parsed = ufw_rules.parse_rules_file(text)
    assert [b.comment for b in parsed.blocks] == ['tunnelwall lab: controller ssh', 'tunnelwall:tunnel']
    assert parsed.blocks[1].lines == UFW_CLI_V4
    assert ufw_rules.render_rules_file(parsed) == text
    assert [ufw_rules.owned(b, 'tunnelwall') for b in parsed.blocks] == [False, True]
    assert ufw_rules.owned_rules(text, 'ipv4', 'tunnelwall') == [rule('198.51.100.11', 'udp')]


def test_parse_refuses_a_file_without_the_rules_section():
    with pytest.raises(ValueError, match=r'/etc/ufw/user\.rules: no "### RULES ###"'):
        ufw_rules.parse_rules_file('*filter\nCOMMIT\n', '/etc/ufw/user.rules')


# ---------------------------------------------------------------------------------------------------------------
# reconciliation
# ---------------------------------------------------------------------------------------------------------------
def test_reconcile_adds_to_an_empty_file_in_ufw_layout_and_removing_all_restores_it_byte_for_byte():
    wanted = [rule('198.51.100.11', 'udp'), rule('2001:db8::11', 'udp', family='ipv6')]
    text, added, removed = ufw_rules.reconcile_file(EMPTY4, 'ipv4', wanted, 'tunnelwall')
    assert text == HEAD4 + '\n' + '\n'.join(UFW_CLI_V4) + '\n\n' + TAIL4
    assert added == [wanted[0]] and removed == []
    back, added, removed = ufw_rules.reconcile_file(text, 'ipv4', [], 'tunnelwall')
    assert back == EMPTY4 and added == [] and removed == [wanted[0]]
    text6 = ufw_rules.reconcile_file(EMPTY6, 'ipv6', wanted, 'tunnelwall')[0]
    assert '\n'.join(UFW_CLI_V6) in text6 and 'ufw-user-output' not in text6


def test_reconcile_is_a_no_op_when_everything_is_there():
    wanted = [rule('198.51.100.11'), rule('198.51.100.12/31')]
    text = ufw_rules.reconcile_file(EMPTY4, 'ipv4', wanted, 'tunnelwall')[0]
    assert ufw_rules.reconcile_file(text, 'ipv4', list(reversed(wanted)), 'tunnelwall') == (text, [], [])


def test_reconcile_removes_stale_adds_new_and_never_touches_other_rules():
    user_out = ('### tuple ### allow tcp 9 198.51.100.99 any 0.0.0.0/0 out',
                '-A ufw-user-output -p tcp -d 198.51.100.99 --dport 9 -j ACCEPT')
    other_tag = ('### tuple ### allow tcp 7844 198.51.100.50 any 0.0.0.0/0 out comment=%s' % ufw_rules.hex_comment('other:tunnel'),
                 '-A ufw-user-output -p tcp -d 198.51.100.50 --dport 7844 -j ACCEPT')
    start = ufw_rules.reconcile_file(HEAD4 + USER_SSH + '\n' + TAIL4, 'ipv4', [rule('198.51.100.11'), rule('198.51.100.12')],
                                     'tunnelwall')[0]
    start = start.replace('\n' + TAIL4, '\n' + '\n'.join(user_out) + '\n\n' + '\n'.join(other_tag) + '\n\n' + TAIL4)
    text, added, removed = ufw_rules.reconcile_file(start, 'ipv4', [rule('198.51.100.12'), rule('198.51.100.13')], 'tunnelwall')
    assert added == [rule('198.51.100.13')] and removed == [rule('198.51.100.11')]
    blocks = ufw_rules.parse_rules_file(text).blocks
    # The user's rules are all there, verbatim; the new owned rule sits right after the kept owned one.
    assert [b.lines for b in blocks if not ufw_rules.owned(b, 'tunnelwall')] == [
        tuple(USER_SSH.strip().split('\n')), user_out, other_tag]
    order = ['0.0.0.0/0', '198.51.100.12', '198.51.100.13', '198.51.100.99', '198.51.100.50']
    assert [b.lines[0].split()[6] for b in blocks] == order


def test_a_hand_edited_owned_rule_is_replaced_and_a_duplicate_removed():
    good = ufw_rules.render_block(rule('198.51.100.11'))
    edited = (good[0], good[1].replace('-j ACCEPT', '-j DROP'))
    text = HEAD4 + '\n' + '\n'.join(edited) + '\n\n' + '\n'.join(good) + '\n\n' + '\n'.join(good) + '\n\n' + TAIL4
    new, added, removed = ufw_rules.reconcile_file(text, 'ipv4', [rule('198.51.100.11')], 'tunnelwall')
    assert added == [] and len(removed) == 2
    assert new == HEAD4 + '\n' + '\n'.join(good) + '\n\n' + TAIL4


def test_a_users_line_right_after_an_owned_rule_is_never_deleted_with_it():
    # Issue 13: a hand-written -A line directly after an owned block (no blank line between) used to be absorbed into
    # that block and deleted when the rule went stale.
    stale = ufw_rules.render_block(rule('198.51.100.11'))
    users = ('-A ufw-user-output -p tcp -d 198.51.100.99 --dport 9 -j ACCEPT',
             '-A ufw-user-output -p udp -d 198.51.100.99 --dport 9 -j ACCEPT')
    text = HEAD4 + '\n' + '\n'.join(stale + users) + '\n\n' + TAIL4
    blocks = ufw_rules.parse_rules_file(text).blocks
    assert [b.lines for b in blocks] == [stale, users] and blocks[1].comment is None
    new, added, removed = ufw_rules.reconcile_file(text, 'ipv4', [rule('198.51.100.12')], 'tunnelwall')
    assert removed == [rule('198.51.100.11')] and added == [rule('198.51.100.12')]
    assert '\n'.join(users) in new and stale[1] not in new
    assert new == HEAD4 + '\n' + '\n'.join(users) + '\n\n' + '\n'.join(ufw_rules.render_block(rule('198.51.100.12'))) \
        + '\n\n' + TAIL4
    # Removing everything owned leaves exactly the user's lines; the file still renders byte for byte when unchanged.
    assert ufw_rules.reconcile_file(new, 'ipv4', [], 'tunnelwall')[0] == HEAD4 + '\n' + '\n'.join(users) + '\n\n' + TAIL4
    assert ufw_rules.render_rules_file(ufw_rules.parse_rules_file(text)) == text


def test_lines_after_a_tuple_of_another_kind_stay_with_it():
    # A logged or limited rule of the user's has several lines only ufw knows: they stay one block, verbatim.
    logged = ('### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in',
              '-A ufw-user-input -p tcp --dport 22 -j ACCEPT', '-A ufw-user-logging-input -j RETURN')
    text = HEAD4 + '\n' + '\n'.join(logged) + '\n\n' + TAIL4
    assert [b.lines for b in ufw_rules.parse_rules_file(text).blocks] == [logged]


def test_names_own_separate_rules():
    text = ufw_rules.reconcile_file(EMPTY4, 'ipv4', [UfwRule('ipv4', 'tcp', 1, '198.51.100.1', 'blue:x')], 'blue')[0]
    assert ufw_rules.reconcile_file(text, 'ipv4', [], 'tunnelwall') == (text, [], [])
    # "tunnelwall lab: ..." is not "tunnelwall:...": the tag is the name followed by a colon.
    assert ufw_rules.owned_rules(HEAD4 + USER_SSH + '\n' + TAIL4, 'ipv4', 'tunnelwall') == []


def test_render_expands_the_plan_with_dns_and_extras_and_deduplicate():
    rules = wanted(['198.51.100.253', '2001:db8:e::253'], default_deny=True, extra_allow=[
        {'protocol': 'tcp', 'port': 3128, 'destinations': ['203.0.113.10', '2001:db8::10/128']},
        {'protocol': 'tcp', 'port': 3128, 'destinations': ['203.0.113.10']}])
    assert len(rules) == 3 + 1 + 1 + 2 + 4  # tunnel tcp, tunnel udp, api, extra (one duplicate), dns
    assert rules[0] == rule('198.51.100.11') and rules[1] == rule('198.51.100.12/31')
    assert rule('2001:db8:e::11', family='ipv6') in rules
    assert UfwRule('ipv6', 'tcp', 3128, '2001:db8::10', 'tunnelwall:extra') in rules
    assert {(r.protocol, r.destination) for r in rules if r.comment == 'tunnelwall:dns'} == {
        ('udp', '198.51.100.253'), ('tcp', '198.51.100.253'), ('udp', '2001:db8:e::253'), ('tcp', '2001:db8:e::253')}


def test_dns_only_under_a_default_deny_and_dns_servers_override_the_resolvers():
    def dns(**overrides):
        request = build(**overrides)
        servers = egress_request.nameservers(request, ['203.0.113.53'], [])
        return [r.destination for r in ufw_rules.render(request, servers) if r.port == 53]
    assert dns() == [] and dns(allow_dns=True) == []  # without a default deny DNS gets out anyway (egress_request)
    assert dns(default_deny=True) == ['203.0.113.53'] * 2
    assert set(dns(default_deny=True, dns_servers=['203.0.113.1'])) == {'203.0.113.1'}
    assert dns(default_deny=True, allow_dns=False) == []


def test_loopback_resolvers_are_replaced_by_the_stubs_upstream_servers():
    assert dns_client.resolvers_to_allow(['127.0.0.53'], ['203.0.113.1', '203.0.113.1', '::1']) == ['203.0.113.1']
    assert dns_client.resolvers_to_allow(['203.0.113.9', '::1'], []) == ['203.0.113.9']
    assert dns_client.resolvers_to_allow(['203.0.113.9'], ['203.0.113.1']) == ['203.0.113.9']
    assert dns_client.resolvers_to_allow(['fe80::1%eth0', '127.0.0.53'], ['203.0.113.1']) == ['fe80::1', '203.0.113.1']


def test_state_absent_wants_nothing():
    assert wanted(state='absent', default_deny=True, rules=[{'bad': 1}]) == []


@pytest.mark.parametrize('overrides, message', [
    ({'rules': [dict(PLAN_RULES[0], ipv4=['198.51.100.300'])]}, "rules[0].ipv4[0]='198.51.100.300': not an IPv4 or IPv6"),
    ({'rules': [dict(PLAN_RULES[0], ipv4=['not-an-address'])]}, "rules[0].ipv4[0]='not-an-address'"),
    ({'rules': [dict(PLAN_RULES[0], ipv4=['198.51.100.5/24'])]}, "rules[0].ipv4[0]='198.51.100.5/24': host bits set; did you mean 198.51.100.0/24?"),
    ({'rules': [dict(PLAN_RULES[0], ipv4=['2001:db8::1'])]}, "rules[0].ipv4[0]='2001:db8::1': an IPv6 destination in the ipv4 list"),
    ({'rules': [dict(PLAN_RULES[0], ipv6=['198.51.100.1'])]}, "rules[0].ipv6[0]='198.51.100.1': an IPv4 destination in the ipv6 list"),
    ({'rules': [dict(PLAN_RULES[0], ipv6=['2001:db8::g'])]}, "rules[0].ipv6[0]='2001:db8::g'"),
    ({'rules': [dict(PLAN_RULES[0], ipv4=['0.0.0.0/0'])]}, "rules[0].ipv4[0]='0.0.0.0/0': a default route"),
    ({'rules': [PLAN_RULES[0], dict(PLAN_RULES[1], port=0)]}, 'rules[1].port=0: expected a port number from 1 to 65535'),
    ({'rules': [dict(PLAN_RULES[1], port=70000)]}, 'rules[0].port=70000'),
    ({'rules': [dict(PLAN_RULES[1], protocol='icmp')]}, "rules[0].protocol='icmp': expected one of tcp, udp"),
    ({'rules': [dict(PLAN_RULES[1], purpose="it's")]}, "rules[0].purpose=\"it's\""),
    ({'name': 'tunnel wall'}, "name='tunnel wall'"),
    ({'name': ''}, "name=''"),
    ({'name': 'tunnelwall\n'}, "name='tunnelwall\\n'"),
    ({'rules': [dict(PLAN_RULES[1], purpose='api\n')]}, "rules[0].purpose='api\\n'"),
    ({'extra_allow': [{'protocol': 'tcp', 'port': 3128, 'destinations': ['proxy.example']}]},
     "extra_allow[0].destinations[0]='proxy.example'"),
    ({'extra_allow': [{'protocol': 'tcp', 'port': 65536, 'destinations': ['203.0.113.1']}]}, 'extra_allow[0].port=65536'),
    ({'extra_allow': [{'protocol': 'tcp', 'port': 1, 'destinations': []}]}, 'extra_allow[0].destinations=[]'),
    ({'default_deny': True, 'dns_servers': ['203.0.113.1', 'dns.example']}, "dns_servers[1]='dns.example'"),
    ({'default_deny': True, 'rules': []}, 'default_deny=True: no tunnel destination in rules'),
])
def test_bad_input_fails_naming_the_option_and_the_value(overrides, message):
    with pytest.raises(ValueError) as error:
        wanted(['203.0.113.53'], **overrides)
    assert message in str(error.value)


def test_no_resolver_with_dns_allowed_fails_saying_what_to_set():
    with pytest.raises(ValueError, match='allow_dns=True: no usable nameserver.*set dns_servers'):
        egress_request.nameservers(build(default_deny=True), [], [])


# ---------------------------------------------------------------------------------------------------------------
# policy
# ---------------------------------------------------------------------------------------------------------------
def test_policy_is_read_from_etc_default_ufw():
    assert ufw_rules.output_policy('IPV6=yes\nDEFAULT_OUTPUT_POLICY="DROP"\n') == 'deny'
    assert ufw_rules.output_policy('# DEFAULT_OUTPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n') == 'allow'
    assert ufw_rules.ipv6_enabled('IPV6=no\n') is False and ufw_rules.ipv6_enabled('IPV6=yes\n') is True
    assert ufw_rules.ufw_enabled('ENABLED=yes\n') is True and ufw_rules.ufw_enabled('ENABLED=no\n') is False
    with pytest.raises(ValueError, match="DEFAULT_OUTPUT_POLICY='BOGUS'"):
        ufw_rules.output_policy('DEFAULT_OUTPUT_POLICY="BOGUS"\n')


@pytest.mark.parametrize('current, default_deny, state, remembered, expected', [
    ('allow', True, 'present', None, ('reject', {'original_policy': 'allow', 'set_policy': 'reject'})),
    ('deny', True, 'present', {'original_policy': 'allow', 'set_policy': 'deny'},
     ('deny', {'original_policy': 'allow', 'set_policy': 'deny'})),
    # Deny or reject of the user's own satisfies default_deny and is never put back.
    ('reject', True, 'present', None, ('reject', None)),
    ('deny', True, 'absent', None, ('deny', None)),
    ('deny', False, 'present', None, ('deny', None)),
    ('allow', False, 'present', None, ('allow', None)),
    # What we set is put back by absent and by default_deny=false ...
    ('deny', True, 'absent', {'original_policy': 'allow', 'set_policy': 'deny'}, ('allow', None)),
    ('deny', False, 'present', {'original_policy': 'reject', 'set_policy': 'deny'}, ('reject', None)),
    # ... unless someone changed it since: theirs stays.
    ('reject', False, 'absent', {'original_policy': 'allow', 'set_policy': 'deny'}, ('reject', None)),
])
def test_desired_policy_remembers_only_what_the_module_replaced(current, default_deny, state, remembered, expected):
    assert ufw_rules.desired_policy(current, default_deny, state, remembered) == expected


def test_diff_text_lists_policy_and_rules():
    text = ufw_rules.diff_text([rule('198.51.100.11', 'udp')], 'deny')
    assert text == 'default outgoing policy: deny\nallow out udp/7844 to 198.51.100.11  # tunnelwall:tunnel\n'


# ---------------------------------------------------------------------------------------------------------------
# the transaction, on real files in a temporary root, with stand-in commands
# ---------------------------------------------------------------------------------------------------------------
class Commands:
    """Stands in for ufw and iptables-restore: records calls, fails the ones asked to, and does what
    `ufw default` does to the files (policy line and the LOGGING section)."""

    def __init__(self, root, fail=()):
        self.root = str(root)
        self.fail = fail
        self.calls = []

    def __call__(self, argv, data=None):
        self.calls.append(' '.join([os.path.basename(argv[0])] + list(argv[1:])))
        if any(self.calls[-1].startswith(f) for f in self.fail):
            return 2, '', 'stand-in failure of %s' % self.calls[-1]
        if argv[1:2] == ['default']:
            path = os.path.join(self.root, 'etc/default/ufw')
            target = ufw_rules.POLICY_TARGETS[argv[2]]
            with open(path) as handle:
                text = handle.read()
            lines = ['DEFAULT_OUTPUT_POLICY="%s"' % target if line.startswith('DEFAULT_OUTPUT_POLICY=') else line
                     for line in text.split('\n')]
            with open(path, 'w') as handle:
                handle.write('\n'.join(lines))
            for name in ('user.rules', 'user6.rules'):
                rules = os.path.join(self.root, 'etc/ufw', name)
                with open(rules) as handle:
                    text = handle.read()
                with open(rules, 'w') as handle:
                    handle.write(text.replace('### END LOGGING ###', '# policy %s\n### END LOGGING ###' % argv[2]))
        return 0, '', ''


BINARIES = {'ufw': '/usr/sbin/ufw', 'iptables-restore': '/usr/sbin/iptables-restore', 'ip6tables-restore': '/usr/sbin/ip6tables-restore'}


@pytest.fixture
def root(tmp_path):
    (tmp_path / 'etc/ufw').mkdir(parents=True)
    (tmp_path / 'etc/default').mkdir()
    (tmp_path / 'run').mkdir()
    (tmp_path / 'etc/ufw/user.rules').write_text(HEAD4 + USER_SSH + '\n' + TAIL4)
    (tmp_path / 'etc/ufw/user6.rules').write_text(EMPTY6)
    (tmp_path / 'etc/ufw/after.rules').write_text('*filter\nCOMMIT\n')
    (tmp_path / 'etc/ufw/after6.rules').write_text('*filter\nCOMMIT\n')
    (tmp_path / 'etc/ufw/ufw.conf').write_text('ENABLED=yes\nLOGLEVEL=low\n')
    (tmp_path / 'etc/default/ufw').write_text('IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n')
    return tmp_path


def snapshot(root):
    files = {}
    for directory, dummy, names in os.walk(str(root / 'etc')):
        for name in names:
            with open(os.path.join(directory, name)) as handle:
                files[os.path.relpath(os.path.join(directory, name), str(root))] = handle.read()
    return files


def job(root, commands, on_inactive='fail', **overrides):
    """The module's backend; the host's resolver is 198.51.100.253."""
    request = build(**overrides)
    servers = egress_request.nameservers(request, ['198.51.100.253'], [])
    return ufw_apply.UfwBackend(request, servers, commands, BINARIES, on_inactive, root=str(root))


def host_lock(root):
    return root / 'run/tunnelwall/egress.lock'


def transact(root, commands, check_mode=False, **overrides):
    """present/absent as the module runs them: the backend in an egress transaction."""
    backend = job(root, commands, **overrides)
    return egress_transaction.run(backend, backend.request, check_mode=check_mode, run_dir=str(host_lock(root).parent),
                                  command=commands)


def revert(root, commands, check_mode=False, lock_timeout=1):
    """state=reverted as the module runs it."""
    backend = job(root, commands, state='reverted', lock_timeout=lock_timeout)
    return egress_transaction.revert_last(backend, backend.request, check_mode, run_dir=str(host_lock(root).parent),
                                          command=commands)


def test_apply_writes_tests_loads_denies_last_and_remembers_the_policy(root):
    commands = Commands(root)
    run = job(root, commands, default_deny=True)
    planned = run.plan()
    assert planned['changed'] and planned['policy'] == {'before': 'allow', 'after': 'reject'}
    assert len(planned['added']) == 5 + 2 and planned['rule_count'] == 7
    assert planned['diff']['before'] == 'default outgoing policy: allow\n'
    assert 'allow out udp/53 to 198.51.100.253  # tunnelwall:dns' in planned['diff']['after']
    run.apply()
    assert commands.calls == ['iptables-restore -n --test', 'ip6tables-restore -n --test',
                              'iptables-restore -n %s/etc/ufw/user.rules' % root,
                              'ip6tables-restore -n %s/etc/ufw/user6.rules' % root, 'ufw default reject outgoing']
    assert json.loads((root / 'etc/ufw/tunnelwall-egress.json').read_text())['original_policy'] == 'allow'
    assert 'tunnelwall lab: controller ssh' not in (root / 'etc/ufw/user.rules').read_text()  # hex, not text
    assert USER_SSH in (root / 'etc/ufw/user.rules').read_text()
    again = job(root, Commands(root), default_deny=True).plan()
    assert again['changed'] is False and again['added'] == [] and again['removed'] == []


def test_absent_opens_first_then_removes_and_leaves_the_files_as_they_were(root):
    before = snapshot(root)
    first = job(root, Commands(root), default_deny=True)
    first.plan()
    first.apply()
    commands = Commands(root)
    absent = job(root, commands, state='absent')
    planned = absent.plan()
    assert planned['policy'] == {'before': 'reject', 'after': 'allow'} and planned['rule_count'] == 0
    absent.apply()
    assert commands.calls[0] == 'ufw default allow outgoing'
    after = snapshot(root)
    # The stand-in `ufw default` leaves a trace in LOGGING; everything else is back, the state file gone.
    assert {k: v.replace('# policy reject\n', '').replace('# policy allow\n', '') for k, v in after.items()} == before


def test_check_mode_reports_the_change_and_writes_nothing(root):
    before = snapshot(root)
    commands = Commands(root)
    checked = transact(root, commands, check_mode=True, default_deny=True)
    assert checked['changed'] is True and len(checked['added']) == 7 and 'backup_dir' not in checked
    assert snapshot(root) == before and commands.calls == []
    applied = transact(root, commands, default_deny=True)
    assert applied['added'] == checked['added'] and applied['diff'] == checked['diff']
    assert transact(root, commands, default_deny=True)['changed'] is False


def test_a_failed_policy_change_restores_files_and_reloads_the_previous_rules(root):
    before = snapshot(root)
    commands = Commands(root, fail=('ufw default',))
    with pytest.raises(egress_transaction.EgressError) as error:
        transact(root, commands, default_deny=True)
    assert 'ufw default reject outgoing failed (rc=2)' in str(error.value)
    assert 'Rolled back: the firewall is as before this run' in str(error.value)
    assert error.value.details['rolled_back'] is True
    assert snapshot(root) == before
    # What a failed `ufw default` did to the live rules is unknown: only ufw's full reload of the restored files is sure.
    assert commands.calls[-2:] == ['ufw default reject outgoing', 'ufw reload']


def test_a_rejected_ruleset_fails_before_anything_is_written(root):
    before = snapshot(root)
    commands = Commands(root, fail=('ip6tables-restore -n --test',))
    with pytest.raises(egress_transaction.EgressError, match='ip6tables-restore --test of the new .*user6.rules failed'):
        transact(root, commands)
    assert snapshot(root) == before
    assert not [c for c in commands.calls if '--test' not in c]


def test_a_failed_load_of_ipv6_reloads_ipv4_too(root):
    before = snapshot(root)
    commands = Commands(root, fail=('ip6tables-restore -n /',))
    with pytest.raises(egress_transaction.EgressError, match='Rolled back'):
        transact(root, commands)
    assert snapshot(root) == before
    assert commands.calls[-1] == 'iptables-restore -n %s/etc/ufw/user.rules' % root


def test_an_unusable_pending_record_fails_before_any_change(root):
    before = snapshot(root)
    (root / 'etc/ufw/tunnelwall-pending.json').mkdir()  # where the record of the state before the change goes
    commands = Commands(root)
    with pytest.raises(egress_transaction.EgressError, match='pending record .*not a regular file.*nothing was done'):
        transact(root, commands, default_deny=True)
    assert snapshot(root) == before and commands.calls == []


def test_inactive_ufw_fails_unless_asked_to_only_write_files(root):
    (root / 'etc/ufw/ufw.conf').write_text('ENABLED=no\n')
    with pytest.raises(egress_transaction.EgressError, match='ufw is installed but inactive .*on_inactive=configure'):
        job(root, Commands(root)).plan()
    commands = Commands(root)
    run = job(root, commands, on_inactive='configure', default_deny=True)
    run.plan()
    run.apply()
    assert commands.calls == ['ufw default reject outgoing']  # files only: nothing loaded
    assert len(ufw_rules.owned_rules((root / 'etc/ufw/user.rules').read_text(), 'ipv4', 'tunnelwall')) == 6
    assert job(root, Commands(root), state='absent').plan()['changed'] is True


def test_ipv6_disabled_skips_ipv6_rules_with_a_warning_and_leaves_user6_alone(root):
    (root / 'etc/default/ufw').write_text('IPV6=no\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n')
    commands = Commands(root)
    run = job(root, commands)
    planned = run.plan()
    assert {r['family'] for r in planned['added']} == {'ipv4'}
    assert 'IPV6=no' in run.warnings[0] and '1 IPv6 rule(s)' in run.warnings[0]
    run.apply()
    assert (root / 'etc/ufw/user6.rules').read_text() == EMPTY6
    assert not [c for c in commands.calls if c.startswith('ip6tables')]


def test_a_foreign_state_file_is_refused(root):
    (root / 'etc/ufw/tunnelwall-egress.json').write_text('{"something": "else"}')
    with pytest.raises(egress_transaction.EgressError, match='not a state file this module wrote'):
        job(root, Commands(root)).plan()


def test_missing_ufw_files_fail_clearly(root):
    os.unlink(str(root / 'etc/ufw/user6.rules'))
    with pytest.raises(egress_transaction.EgressError, match=r'user6\.rules is missing: is ufw installed\?'):
        job(root, Commands(root)).plan()


def test_reverted_undoes_exactly_the_last_change_once(root):
    before = snapshot(root)
    transact(root, Commands(root), default_deny=True)
    checked = revert(root, Commands(root), check_mode=True)
    assert checked['changed'] is True and checked['policy'] == {'before': 'reject', 'after': 'allow'}
    assert len(checked['removed']) == 7 and checked['added'] == [] and checked['rule_count'] == 0
    commands = Commands(root)
    reverted = revert(root, commands)
    assert reverted['removed'] == checked['removed']
    # The policy changed, so only ufw's full reload puts the chains back; the stand-in leaves a trace in LOGGING.
    assert commands.calls == ['ufw reload']
    assert snapshot(root) == before
    again = revert(root, Commands(root))
    assert again['changed'] is False and again['removed'] == []


def test_a_reverted_whose_reload_fails_says_it_did_not_roll_back(root):
    """The files are back but ufw did not load them: the result says rolled_back=false, so the role does not add
    "Nothing to roll back: the firewall is as before this run" (tasks/failed.yml) to an incomplete restore."""
    transact(root, Commands(root), default_deny=True)
    with pytest.raises(egress_transaction.EgressError, match=r'^state=reverted: ROLLBACK INCOMPLETE') as failed:
        revert(root, Commands(root, fail=('ufw reload',)))
    assert failed.value.details['rolled_back'] is False


def test_reverted_reloads_only_the_rules_when_the_policy_stays(root):
    transact(root, Commands(root), default_deny=True)
    after_deny = snapshot(root)
    transact(root, Commands(root), default_deny=True, extra_allow=[{'protocol': 'udp', 'port': 123, 'destinations': ['203.0.113.123']}])
    commands = Commands(root)
    reverted = revert(root, commands)
    assert [r['destination'] for r in reverted['removed']] == ['203.0.113.123']
    assert reverted['policy'] == {'before': 'reject', 'after': 'reject'}
    assert commands.calls == ['ufw reload']
    assert snapshot(root) == after_deny


def test_reverted_keeps_what_another_writer_changed_since_the_run(root):
    before = snapshot(root)
    transact(root, Commands(root), default_deny=True)
    rules = root / 'etc/ufw/user.rules'
    rules.write_text(rules.read_text().replace('### END RULES ###', '# edited by hand\n### END RULES ###'))
    commands = Commands(root)
    reverted = revert(root, commands)
    assert reverted['changed'] is True and reverted['policy'] == {'before': 'reject', 'after': 'allow'}
    assert commands.calls == ['ufw reload']
    assert snapshot(root) == dict(before, **{'etc/ufw/user.rules': before['etc/ufw/user.rules'].replace(
        '### END RULES ###', '# edited by hand\n### END RULES ###')})


def test_reverted_takes_turns_on_the_host_wide_lock_and_refuses_after_lock_timeout(root):
    transact(root, Commands(root), default_deny=True)
    denied = snapshot(root)
    commands = Commands(root)
    with open(str(host_lock(root)), 'w') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write('pid 42, tunnelwall firewalld egress change, name other\n')
        held.flush()
        started = time.monotonic()
        with pytest.raises(egress_transaction.EgressError,
                           match=r'holds the host-wide lock .*egress\.lock \(pid 42, tunnelwall firewalld egress change'):
            revert(root, commands, lock_timeout=1)
        assert 1 <= time.monotonic() - started < 3
    assert snapshot(root) == denied and commands.calls == []
    # Once the lock is free the same revert goes through; ufw_egress's own lock of old is gone for good.
    reverted = revert(root, commands)
    assert reverted['changed'] is True and reverted['transaction']['waited_for_lock'] is False
    assert not (root / 'run/tunnelwall-ufw_egress.lock').exists()


class KilledAt(Commands):
    """The run is killed (KeyboardInterrupt gets past every handler, as a SIGKILL would) when it runs this command."""

    def __init__(self, root, killed_at):
        super().__init__(root)
        self.killed_at = killed_at

    def __call__(self, argv, data=None):
        if ' '.join([os.path.basename(argv[0])] + list(argv[1:])).startswith(self.killed_at):
            raise KeyboardInterrupt('killed at %s' % self.killed_at)
        return super().__call__(argv, data)


def test_reverted_first_restores_what_a_killed_run_left_pending(root):
    transact(root, Commands(root), default_deny=True)
    denied = snapshot(root)
    # A second run dies half way: user.rules has the new rule and is loaded, user6.rules is written but not loaded.
    with pytest.raises(KeyboardInterrupt):
        transact(root, KilledAt(root, 'ip6tables-restore -n /'), default_deny=True,
                 extra_allow=[{'protocol': 'udp', 'port': 123, 'destinations': ['203.0.113.123', '2001:db8::123']}])
    assert (root / 'etc/ufw/tunnelwall-pending.json').exists()
    assert '-d 203.0.113.123 ' in (root / 'etc/ufw/user.rules').read_text()
    commands = Commands(root)
    reverted = revert(root, commands)
    # Under the lock the dead run's change was restored first (files, then ufw's reload of them); its backup
    # replaced the first run's, so there is nothing left to revert.
    assert 'never confirmed its change' in reverted['transaction']['settled']
    assert commands.calls == ['ufw reload']
    assert reverted['changed'] is False
    assert {k: v for k, v in snapshot(root).items() if k != 'etc/ufw/tunnelwall-pending.json'} == denied
    assert not (root / 'etc/ufw/tunnelwall-pending.json').exists()


def test_added_and_removed_have_the_shape_every_backend_reports(root):
    applied = transact(root, Commands(root), default_deny=True, allow_dhcp=True)
    assert {'purpose': 'dhcp', 'family': 'ipv6', 'protocol': 'udp', 'port': 547, 'destination': '::/0'} in applied['added']
    assert {'purpose': 'tunnel', 'family': 'ipv4', 'protocol': 'tcp', 'port': 7844,
            'destination': '198.51.100.12/31'} in applied['added']
    assert all(set(r) == {'purpose', 'family', 'protocol', 'port', 'destination'} for r in applied['added'])
    removed = transact(root, Commands(root), state='absent')
    assert removed['added'] == [] and sorted(removed['removed'], key=repr) == sorted(applied['added'], key=repr)
