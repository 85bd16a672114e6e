# -*- coding: utf-8 -*-
"""What win_firewall_egress's action plugin hands the Windows host, and the transaction it drives, for real.

The host is a recording fake (``Host``): it answers the module runs as the PowerShell module would, so the sequence
(apply, probe, confirm or restore), the arguments of each run and the task's result are checked without Windows.
"""

from __future__ import annotations

import base64

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall as wf

from tests.unit.plugins.module_utils.test_probe_report import PLAN

RULES = [
    {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.12/31', '198.51.100.11/32'], 'ipv6': ['2001:db8:e::11/128']},
    {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32'], 'ipv6': []},
    {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32'], 'ipv6': []},
]


def params(**values):
    """The action's options after its argument spec (the defaults it fills in)."""
    base = {'rules': RULES, 'name': 'tunnelwall', 'default_deny': False, 'profiles': ['Domain', 'Private', 'Public'],
            'allow_dns': True, 'dns_servers': None, 'extra_allow': [], 'state': 'present', 'verify': None,
            'confirm_timeout': 300, 'lock_timeout': 120}
    base.update(values)
    return base


def prepared_for(**values):
    request, warning = wf.build_request(params(**values))
    return wf.prepare(request, params(**values)['profiles'])


# --- the request and the rules -----------------------------------------------------------------------------------

def test_one_rule_per_purpose_protocol_and_port_with_sorted_canonical_addresses():
    prepared = prepared_for()
    assert [r['display_name'] for r in prepared['rules']] == [
        'tunnelwall cloudflared: api tcp/443', 'tunnelwall cloudflared: tunnel tcp/7844', 'tunnelwall cloudflared: tunnel udp/7844']
    tcp = prepared['rules'][1]
    assert tcp['addresses'] == ['198.51.100.11/32', '198.51.100.12/31', '2001:db8:e::11/128']
    assert prepared['group'] == 'tunnelwall cloudflared' and prepared['state'] == 'present'
    assert prepared_for(profiles=['Public', 'Domain', 'Public'])['profiles'] == ['Public', 'Domain']
    # Windows ignores the case of a profile name; so does the module (one spelling on the host).
    assert prepared_for(profiles=['public', 'DOMAIN', 'Public'])['profiles'] == ['Public', 'Domain']


def test_the_old_spelling_of_the_group_still_names_the_same_group_with_a_warning():
    request, warning = wf.build_request(params(name='tunnelwall cloudflared'))
    assert request.name == 'tunnelwall'
    assert wf.prepare(request, ['Public'])['group'] == 'tunnelwall cloudflared'
    assert "use name='tunnelwall'" in warning
    assert wf.build_request(params())[1] is None


def test_default_deny_adds_dns_to_the_given_resolvers_and_no_dns_without_it():
    prepared = prepared_for(default_deny=True, dns_servers=['198.51.100.253', '2001:db8:e::253'])
    assert prepared['default_deny'] is True
    dns = [r for r in prepared['rules'] if r['purpose'] == 'dns']
    assert [(r['protocol'], r['port'], r['addresses']) for r in dns] == [
        ('tcp', 53, ['198.51.100.253/32', '2001:db8:e::253/128']), ('udp', 53, ['198.51.100.253/32', '2001:db8:e::253/128'])]
    # One meaning everywhere: DNS rules only under a default deny.
    assert not [r for r in prepared_for(dns_servers=['198.51.100.253'])['rules'] if r['purpose'] == 'dns']


def test_a_rule_without_destinations_is_left_out_as_windows_would_read_it_as_any_address():
    prepared = prepared_for(rules=RULES + [{'purpose': 'update', 'protocol': 'tcp', 'port': 443, 'ipv4': [], 'ipv6': []}])
    assert 'update' not in {r['purpose'] for r in prepared['rules']}
    assert all(r['addresses'] for r in prepared['rules'])


def test_extra_allow_and_absent():
    prepared = prepared_for(extra_allow=[{'protocol': 'tcp', 'port': 22, 'destinations': ['203.0.113.0/24']}])
    extra = [r for r in prepared['rules'] if r['purpose'] == 'extra']
    assert [(r['display_name'], r['addresses']) for r in extra] == [('tunnelwall cloudflared: extra tcp/22', ['203.0.113.0/24'])]
    assert prepared_for(state='absent', rules=None)['rules'] == []


@pytest.mark.parametrize('text, canonical', [
    ('198.51.100.7', '198.51.100.7/32'), ('198.51.100.0/24', '198.51.100.0/24'),
    ('198.51.100.0/255.255.255.0', '198.51.100.0/24'), ('2001:db8::11', '2001:db8::11/128'),
])
def test_windows_address_forms_compare_equal(text, canonical):
    assert wf.canonical_address(text) == canonical


# The same bad request gives the Windows action the message the Linux modules give (egress_request's).
SAME_AS_LINUX = [
    {'default_deny': True, 'dns_servers': ['203.0.113.53'], 'rules': [RULES[2]]},
    {'rules': [dict(RULES[0], ipv6=['fe80::1%eth0'])]},
    {'name': 'tunnelwall\n'},
    {'name': 'tunnel*'},
    {'name': 'a[b]'},
    {'name': 'tunnel?'},
    {'rules': [dict(RULES[0], purpose='tunnel\n')]},
    {'rules': [dict(RULES[0], port=0)]},
    {'rules': [dict(RULES[0], ipv4=['198.51.100.1/24'])]},
    {'dns_servers': ['fe80::53%2'], 'default_deny': True},
    {'extra_allow': [{'protocol': 'tcp', 'port': 22, 'destinations': ['nowhere']}]},
    {'confirm_timeout': -1},
    {'confirm_timeout': 86401},
    {'lock_timeout': 99999},
]


@pytest.mark.parametrize('values', SAME_AS_LINUX, ids=lambda v: repr(v)[:40])
def test_bad_input_gets_the_linux_modules_message(values):
    with pytest.raises(egress_request.RequestError) as linux:
        egress_request.build(params(**values), 'ufw')
    with pytest.raises(wf.RuleError) as windows:
        wf.build_request(params(**values))
    assert str(windows.value) == str(linux.value)


def test_the_messages_name_the_option():
    with pytest.raises(wf.RuleError, match=r"^default_deny=True: no tunnel destination in rules"):
        wf.build_request(params(default_deny=True, dns_servers=['203.0.113.53'], rules=[RULES[2]]))
    with pytest.raises(wf.RuleError, match=r"^rules\[0\]\.ipv6\[0\]='fe80::1%eth0': an IPv6 zone id"):
        wf.build_request(params(rules=[dict(RULES[0], ipv6=['fe80::1%eth0'])]))
    with pytest.raises(wf.RuleError, match=r"^name='tunnelwall\\n': expected ASCII letters"):
        wf.build_request(params(name='tunnelwall\n'))


@pytest.mark.parametrize('values, message', [
    ({'default_deny': True}, 'allow_dns=True: default_deny on Windows needs dns_servers'),
    ({'profiles': ['Public', 'Office']}, "profiles=['Public', 'Office']: expected one or more of Domain, Private, Public"),
    ({'profiles': []}, 'profiles=[]'),
    ({'name': 'x' * 65}, 'at most 64 characters for windows'),
])
def test_windows_only_refusals_name_the_option(values, message):
    with pytest.raises(wf.RuleError) as error:
        wf.build_request(params(**values))
    assert message in str(error.value)


def test_verify_options_get_the_probes_defaults_and_bad_ones_are_named():
    probe = wf.verify_params({'plan': PLAN, 'require': ['quic'], 'timeout': 2.0, 'ca_path': 'C:\\certs\\ca.pem',
                              'validate_certs': True})
    assert probe['require'] == ['quic'] and probe['ip_version'] == 'auto' and probe['ca_path'] == 'C:\\certs\\ca.pem'
    assert wf.verify_params(None) is None
    with pytest.raises(wf.RuleError, match=r'^verify\.'):
        wf.verify_params({'plan': {'rules': []}, 'require': ['any_tunnel'], 'timeout': 2.0, 'ca_path': None,
                          'validate_certs': True})


# --- the transaction ---------------------------------------------------------------------------------------------

PREVIOUS = {'group': 'tunnelwall cloudflared', 'outbound': {'Domain': 'Allow', 'Public': 'Allow'},
            'rules': [{'display_name': 'tunnelwall cloudflared: tunnel tcp/7844', 'protocol': 'tcp', 'port': '7844',
                       'addresses': ['198.51.100.11/32'], 'profiles': 'Domain, Public', 'enabled': 'True'}]}


class Host:
    """Answers the module runs as the Windows modules would; records every call."""

    def __init__(self, probe_ok=True, changed=True, busy=0, fail=None, gone=False, crash=None, connects=None,
                 names=None):
        self.calls = []
        self.connects = connects or {}  # address: the connect step's row for it (connected when not given)
        self.names = names or {}  # name: addresses, for the origins step's resolve
        self.crash = crash or {}  # action: message - an unhandled exception: a result without module
        self.gone = gone  # the scheduled task fired before the verdict: the record is gone
        self.probe_ok = probe_ok
        self.changed = changed
        self.busy = busy
        self.fail = fail or {}

    def __call__(self, module, args):
        self.calls.append((module, args))
        prepared = args['prepared']
        if module == wf.PROBE_MODULE:
            return self.probe(prepared)
        action = prepared['action']
        if action in self.crash:
            return {'failed': True, 'msg': self.crash[action], 'exception': 'at line 1'}
        # The module names itself in every result it reports, failures too (win_firewall_egress.ps1).
        return dict(self.module(action, prepared), module=wf.MODULE)

    def module(self, action, prepared):
        if action in self.fail:
            return {'failed': True, 'msg': self.fail[action]}
        if action == 'connect':
            return {'changed': False, 'connects': [dict({'connected': True, 'error': None, 'timed_out': False,
                                                         'message': None}, **self.connects.get(t['address'], {}),
                                                        address=t['address'], port=t['port'])
                                                   for t in prepared['targets']]}
        if action == 'origins':
            return {'changed': False, 'origins': {
                'service': None, 'file': None, 'resolved': dict((n, self.names[n]) for n in prepared['resolve'] if n in self.names),
                'unresolved': dict((n, 'No such host is known') for n in prepared['resolve'] if n not in self.names)}}
        if action == 'apply':
            if self.busy:
                self.busy -= 1
                return {'changed': False, 'busy': {'id': 'a1b2c3d4e5f6', 'group': 'other cloudflared',
                                                   'started': '2026-11-29T00:00:00Z', 'expires': '2026-11-29T00:05:00Z'}}
            txn = prepared['transaction']
            return {'changed': self.changed, 'added': ['x'] if self.changed else [], 'previous': PREVIOUS,
                    'transaction': {'settled': None, 'confirmed': self.changed and not txn['verify'],
                                    'armed': {'how': 'scheduled_task', 'task_path': txn['task_path'],
                                              'task_name': txn['task_name'], 'at': '2026-11-29T00:10:00Z'}
                                    if self.changed and txn['confirm_timeout'] else None}}
        if self.gone:
            return {'changed': False, action.replace('confirm', 'confirmed').replace('restore', 'restored'): False,
                    'message': 'change 0123456789ab is no longer pending: the scheduled task restored it already'}
        if action == 'confirm':
            return {'changed': False, 'confirmed': True}
        return {'changed': True, 'restored': True, 'message': 'restored'}

    def probe(self, prepared):
        # A QUIC target answering nothing and a TLS target answering (or not): enough for any_tunnel.
        rows = [{'id': t['id'], 'check': check, 'ok': self.probe_ok and check != 'quic',
                 'error_kind': None if self.probe_ok and check != 'quic' else 'timeout', 'message': 'no answer'}
                for t in prepared['targets'] for check in t['checks']]
        return {'families': ['ipv4', 'ipv6'], 'results': rows, 'dns': {'nameservers': [], 'answers': []}}

    def actions(self):
        return [args['prepared'].get('action', 'probe') if module == wf.MODULE else 'probe' for module, args in self.calls]


def transact(host, check_mode=False, verify=True, **values):
    request, dummy = wf.build_request(params(**values))
    prepared = wf.prepare(request, params(**values)['profiles'])
    probe = wf.verify_params({'plan': PLAN, 'require': ['any_tunnel'], 'timeout': 1.0}) if verify else None
    slept = []
    clock = iter(range(0, 10000, 3))
    result = wf.run(request, prepared, probe, host, check_mode=check_mode, sleep=slept.append,
                    clock=lambda: next(clock), make_id=lambda: '0123456789ab')
    return result, slept


def test_a_verified_change_is_applied_probed_and_confirmed():
    host = Host()
    result, dummy = transact(host, default_deny=True, dns_servers=['203.0.113.53'], confirm_timeout=120)
    assert host.actions() == ['apply', 'probe', 'confirm']
    apply = host.calls[0][1]['prepared']
    assert apply['transaction'] == {'id': '0123456789ab', 'confirm_timeout': 120, 'task_path': '\\tunnelwall\\',
                                    'task_name': 'egress revert 0123456789ab', 'verify': True}
    assert apply['default_deny'] is True and apply['group'] == 'tunnelwall cloudflared'
    assert apply['profiles'] == ['Domain', 'Private', 'Public']
    # The probe gets real QUIC Initials built here (PowerShell 5.1 has no AES-GCM).
    quic = [t for t in host.calls[1][1]['prepared']['targets'] if t['protocol'] == 'udp']
    # cloudflared's own first flight comes first: Initials of 1232 bytes to IPv4, 1252 to IPv6 (quic_initial).
    assert quic and all(t['attempts'][0]['kind'] == 'cloudflared' for t in quic)
    assert all(len(base64.b64decode(d)) == (1232 if t['family'] == 'ipv4' else 1252)
               for t in quic for d in t['attempts'][0]['datagrams'])
    confirm = host.calls[2][1]['prepared']
    assert confirm['transaction']['id'] == '0123456789ab' and confirm['transaction']['task_name'] == apply['transaction']['task_name']
    assert result['verification']['unmet_requirements'] == []
    assert result['transaction']['confirmed'] is True and result['transaction']['restored'] is False
    assert result['transaction']['armed']['task_name'] == 'egress revert 0123456789ab'


def test_a_failed_verification_restores_the_record_and_fails_like_linux():
    host = Host(probe_ok=False)
    with pytest.raises(wf.TransactionFailed) as failed:
        transact(host, default_deny=True, dns_servers=['203.0.113.53'])
    assert host.actions() == ['apply', 'probe', 'restore']
    restore = host.calls[2][1]['prepared']
    assert restore['action'] == 'restore' and restore['transaction']['id'] == '0123456789ab'
    message = str(failed.value)
    assert message.startswith('verification failed after applying the rules - any_tunnel')
    assert message.endswith("Rolled back: the 1 rule(s) of group 'tunnelwall cloudflared' as before and the default "
                            'outbound actions Domain=Allow, Public=Allow.')
    details = failed.value.details
    assert details['rolled_back'] is True and details['transaction']['restored'] is True
    assert details['module'] == 'tunnelwall.cloudflared.win_firewall_egress'
    assert details['verification']['unmet_requirements']


def test_a_restore_that_fails_says_so_and_names_the_scheduled_task():
    host = Host(probe_ok=False, fail={'restore': 'WinRM connection lost'})
    with pytest.raises(wf.TransactionFailed) as failed:
        transact(host)
    message = str(failed.value)
    assert 'Rolled back: ROLLBACK FAILED (WinRM connection lost); the scheduled task \\tunnelwall\\egress revert ' \
           '0123456789ab restores the previous state at 2026-11-29T00:10:00Z.' in message
    assert failed.value.details['rolled_back'] is False


def test_without_verify_the_module_confirms_in_the_same_run():
    host = Host()
    result, dummy = transact(host, verify=False)
    assert host.actions() == ['apply']
    assert host.calls[0][1]['prepared']['transaction']['verify'] is False
    assert result['verification'] is None and result['transaction']['confirmed'] is True
    assert result['module'] == 'tunnelwall.cloudflared.win_firewall_egress'


def test_check_mode_only_plans():
    host = Host()
    result, dummy = transact(host, check_mode=True)
    assert host.actions() == ['apply'] and host.calls[0][1]['prepared']['transaction']['verify'] is False
    assert result['verification'] is None


def test_no_change_still_verifies_and_a_failure_says_nothing_changed():
    host = Host(changed=False, probe_ok=False)
    with pytest.raises(wf.TransactionFailed, match=r'verification failed - any_tunnel.*Nothing was changed by this run\.$'):
        transact(host)
    assert host.actions() == ['apply', 'probe']


def test_confirm_timeout_zero_arms_nothing_and_a_lost_restore_says_the_change_stays():
    host = Host(probe_ok=False, fail={'restore': 'unreachable'})
    with pytest.raises(wf.TransactionFailed, match='no dead-man revert was armed .confirm_timeout=0.'):
        transact(host, confirm_timeout=0)
    assert host.calls[0][1]['prepared']['transaction']['confirm_timeout'] == 0


def test_another_runs_pending_change_is_waited_for_then_named():
    host = Host(busy=2)
    result, slept = transact(host)
    assert host.actions() == ['apply', 'apply', 'apply', 'probe', 'confirm']
    assert slept == [wf.LOCK_POLL, wf.LOCK_POLL] and result['transaction']['waited_for_lock'] is True
    host = Host(busy=1000)
    with pytest.raises(wf.TransactionFailed) as failed:
        transact(host, lock_timeout=10)
    assert str(failed.value) == (
        "another egress change holds the host-wide lock: change a1b2c3d4e5f6 of group "
        "'other cloudflared', started 2026-11-29T00:00:00Z, unconfirmed until 2026-11-29T00:05:00Z; waited 10s "
        "(lock_timeout) and changed nothing")
    assert failed.value.details['module'] == 'tunnelwall.cloudflared.win_firewall_egress'
    assert 'probe' not in host.actions()


def test_a_failed_apply_is_reported_as_the_module_said_it():
    host = Host(fail={'apply': "Access is denied; restored the 0 rule(s) of group 'x'"})
    with pytest.raises(wf.TransactionFailed, match=r"^Access is denied; restored") as failed:
        transact(host)
    assert host.actions() == ['apply']
    assert failed.value.details['module'] == 'tunnelwall.cloudflared.win_firewall_egress'


def test_an_apply_the_module_never_reported_carries_no_module():
    """An unhandled exception (or a lost connection) in the apply: the failure does not name the module, so the
    role does not claim the firewall is as before (roles/egress_firewall/tasks/failed.yml)."""
    host = Host(crash={'apply': 'Unhandled exception while executing module: boom'})
    with pytest.raises(wf.TransactionFailed, match=r'^Unhandled exception while executing module: boom$') as failed:
        transact(host)
    assert 'module' not in failed.value.details and 'rolled_back' not in failed.value.details, failed.value.details


def test_a_verified_change_whose_confirmation_is_lost_fails_naming_the_scheduled_task():
    host = Host(fail={'confirm': 'WinRM timeout'})
    with pytest.raises(wf.TransactionFailed, match=r'verified, but the confirmation failed \(WinRM timeout\); the '
                                                   r'scheduled task .* restores the previous state') as failed:
        transact(host)
    # The change is still on the host: the role must not say "Nothing to roll back" (tasks/failed.yml).
    assert failed.value.details['rolled_back'] is False


def test_a_change_the_scheduled_task_restored_before_the_verdict_is_neither_confirmed_nor_restored_twice():
    with pytest.raises(wf.TransactionFailed) as failed:
        transact(Host(gone=True))
    assert str(failed.value) == ('verified, but not confirmed - change 0123456789ab is no longer '
                                 'pending: the scheduled task restored it already')
    assert failed.value.details['rolled_back'] is True
    with pytest.raises(wf.TransactionFailed) as failed:
        transact(Host(gone=True, probe_ok=False))
    assert str(failed.value).endswith('Rolled back: nothing by this run - change 0123456789ab is no longer pending: the '
                                      'scheduled task restored it already.')
    assert failed.value.details['rolled_back'] is True and failed.value.details['transaction']['restored'] is False


def test_restore_summary():
    assert wf.restore_summary(None) == 'nothing to restore'
    assert wf.restore_summary({'group': 'g', 'rules': [], 'outbound': {'Public': 'Block'}}) == \
        "the 0 rule(s) of group 'g' as before and the default outbound action Public=Block"


# --- the host services under a default deny --------------------------------------------------------------

def test_allow_metadata_adds_one_rule_for_both_endpoints_under_default_deny_only():
    rules = prepared_for(default_deny=True, dns_servers=['203.0.113.53'], allow_metadata=True)['rules']
    assert 'tunnelwall cloudflared: metadata tcp/80' in [r['display_name'] for r in rules]
    rule = [r for r in rules if r['purpose'] == 'metadata'][0]
    assert rule['addresses'] == ['169.254.169.254/32', 'fd00:ec2::254/128'] and rule['protocol'] == 'tcp'
    assert not [r for r in prepared_for(allow_metadata=True)['rules'] if r['purpose'] == 'metadata']
    assert not [r for r in prepared_for(default_deny=True, dns_servers=['203.0.113.53'])['rules'] if r['purpose'] == 'metadata']


def test_dhcp_and_mld_are_left_to_windows_core_networking_rules():
    # Windows' own outbound Core Networking rules allow DHCP and MLD; the group gets no rule for them either way.
    on = prepared_for(default_deny=True, dns_servers=['203.0.113.53'], allow_dhcp=True, allow_mld=True)['rules']
    off = prepared_for(default_deny=True, dns_servers=['203.0.113.53'], allow_dhcp=False, allow_mld=False)['rules']
    assert on == off
    assert {r['purpose'] for r in on} == {'tunnel', 'api', 'dns'}


def test_a_bad_host_service_option_gets_the_linux_message():
    with pytest.raises(wf.RuleError, match="^allow_metadata='yes': expected true or false$"):
        wf.build_request(params(default_deny=True, dns_servers=['203.0.113.53'], allow_metadata='yes'))


def test_added_and_removed_in_the_shape_of_every_backend_with_the_windows_names_kept():
    before = [{'display_name': 'tunnelwall cloudflared: tunnel udp/7844', 'protocol': 'UDP', 'port': '7844',
               'addresses': ['198.41.192.7/32', '198.41.192.8']},
              {'display_name': 'tunnelwall cloudflared: update tcp/443', 'protocol': 'TCP', 'port': '443',
               'addresses': ['2606:4700::1']},
              {'display_name': 'other cloudflared: tunnel udp/7844', 'protocol': 'UDP', 'port': '7844',
               'addresses': ['192.0.2.1/32']}]
    prepared = {'rules': [{'display_name': 'tunnelwall cloudflared: tunnel udp/7844', 'protocol': 'udp', 'port': 7844,
                           'addresses': ['198.41.192.7/32', '198.41.192.9/32']}]}
    module = {'changed': True, 'added': [], 'removed': ['tunnelwall cloudflared: update tcp/443'],
              'updated': ['tunnelwall cloudflared: tunnel udp/7844'], 'previous': {'rules': before}}
    result = wf.with_rule_changes(module, prepared, 'tunnelwall')
    row = {'purpose': 'tunnel', 'family': 'ipv4', 'protocol': 'udp', 'port': 7844}
    assert result['added'] == [dict(row, destination='198.41.192.9/32')]
    assert result['removed'] == [dict(row, destination='198.41.192.8/32'),
                                 {'purpose': 'update', 'family': 'ipv6', 'protocol': 'tcp', 'port': 443,
                                  'destination': '2606:4700::1/128'}]
    assert result['windows_removed'] == ['tunnelwall cloudflared: update tcp/443'] and result['windows_added'] == []
    # A module that stopped before comparing (bad input, unreachable) gets no lists made up.
    assert wf.with_rule_changes({'failed': True, 'msg': 'x'}, prepared, 'tunnelwall') == {'failed': True, 'msg': 'x'}


def test_drift_and_rows_read_the_group_one_way_and_differ_only_where_they_must():
    rules = [{'display_name': 'tunnelwall cloudflared: tunnel udp/7844', 'protocol': 'UDP', 'port': '7844',
              'addresses': ['198.41.192.7', 'not an address'], 'description': wf.MARKER},
             {'display_name': 'tunnelwall cloudflared: api tcp/443', 'protocol': 'TCP', 'port': '443',
              'addresses': ['api.cloudflare.com']},  # only invalid addresses
             {'display_name': 'tunnelwall cloudflared: update tcp/443', 'protocol': 'TCP', 'port': '443', 'addresses': []},
             {'display_name': 'tunnelwall cloudflared: extra tcp/22', 'protocol': 'TCP', 'port': '22',
              'addresses': ['192.0.2.22/32'], 'description': 'someone else'},
             {'display_name': 'tunnelwall cloudflaredX: dns udp/53', 'addresses': ['192.0.2.53']}]
    # Drift: a purpose whose addresses are all invalid is there with none; another owner's rule is not.
    assert wf.applied_from_rules(rules, 'tunnelwall') == {'api': [], 'tunnel': ['198.41.192.7/32']}
    # added/removed: one row per valid destination, whoever's marker the rule carries.
    assert wf.rule_rows(rules, 'tunnelwall') == [
        {'purpose': 'tunnel', 'family': 'ipv4', 'protocol': 'udp', 'port': 7844, 'destination': '198.41.192.7/32'},
        {'purpose': 'extra', 'family': 'ipv4', 'protocol': 'tcp', 'port': 22, 'destination': '192.0.2.22/32'}]


# --- cloudflared's origins, connected to after the change (the host connects, the controller judges) ----------------

ORIGIN = ({'host': '10.1.2.3', 'port': 8080},)
BLOCKED = {'connected': False, 'error': 10013,
           'message': 'An attempt was made to access a socket in a way forbidden by its access permissions'}
REFUSED = {'connected': False, 'error': 10061,
           'message': 'No connection could be made because the target machine actively refused it'}
ROW_KEYS = {'host', 'address', 'port', 'protocol', 'source', 'checked', 'ok', 'state', 'verdict'}


def transact_origins(host, given=ORIGIN, verify=True, verify_origins=None, check_mode=False, **values):
    """transact with origins under a default deny: discover_origins and origin_check as the action runs them."""
    values = dict({'default_deny': True, 'dns_servers': ['203.0.113.53'], 'origins': list(given),
                   'cloudflared_config': 'none'}, **values)
    request, dummy = wf.build_request(params(**values))
    request = wf.discover_origins(request, host)
    check = wf.origin_check(request, host, verify_origins)
    prepared = wf.prepare(request, params(**values)['profiles'])
    probe = wf.verify_params({'plan': PLAN, 'require': ['any_tunnel', 'origins'], 'timeout': 1.0}) if verify else None
    result = wf.run(request, prepared, probe, host, check_mode=check_mode, sleep=lambda s: None, make_id=lambda: '0123456789ab',
                    origin_check=check)
    return result, request.origin_report


def test_an_origin_the_new_rules_block_fails_verification_and_the_change_is_restored():
    """WSAEACCES (10013): Windows Firewall refused the connect on the host - the default deny blocks the origin."""
    host = Host(connects={'10.1.2.3': BLOCKED})
    with pytest.raises(wf.TransactionFailed) as failed:
        transact_origins(host)
    assert host.actions() == ['apply', 'probe', 'connect', 'restore']
    connect = host.calls[2][1]['prepared']
    assert connect == {'action': 'connect', 'targets': [{'address': '10.1.2.3', 'port': 8080}],
                       'timeout': wf.origins.CONNECT_TIMEOUT}
    message = str(failed.value)
    assert message.startswith('verification failed after applying the rules - origins: 10.1.2.3 port 8080 (10.1.2.3, '
                              'variable origins[0]): blocked: WSAEACCES (10013)')
    assert 'the SYN never left this host (WSAEACCES: the Windows Filtering Platform refused the connect' in message
    assert 'Rolled back: the 1 rule(s)' in message
    details = failed.value.details
    assert details['rolled_back'] is True and details['transaction']['restored'] is True
    row, = details['verification']['origins']
    assert set(row) == ROW_KEYS and (row['checked'], row['ok'], row['state']) == (True, False, 'blocked')
    assert details['verification']['unmet_requirements'][-1].startswith('origins: 10.1.2.3 port 8080')


@pytest.mark.parametrize('answer, state', [({}, 'reachable'), (REFUSED, 'refused')])
def test_a_connected_or_refused_origin_passes_and_the_change_is_confirmed(answer, state):
    """Refused (WSAECONNREFUSED): the reset came from beyond the host - Windows Firewall never resets an outbound
    connect it blocks - so the origin is down, not blocked by the rules."""
    host = Host(connects={'10.1.2.3': answer})
    result, report = transact_origins(host)
    assert host.actions() == ['apply', 'probe', 'connect', 'confirm']
    row, = result['verification']['origins']
    assert (row['checked'], row['ok'], row['state']) == (True, True, state)
    assert report['verification'] == [row] and report['checked'] is True
    assert result['verification']['unmet_requirements'] == [] and result['transaction']['confirmed'] is True
    if state == 'refused':
        assert 'Windows Firewall never answers a connect it blocks with a TCP reset' in row['verdict']


@pytest.mark.parametrize('answer, outcome', [
    ({'connected': False, 'timed_out': True}, 'no answer in 3s'),
    ({'connected': False, 'error': 10065, 'message': 'A socket operation was attempted to an unreachable host'},
     'WSAEHOSTUNREACH (10065)'),
    ({'connected': False, 'error': 10060}, 'WSAETIMEDOUT (10060)'),
    ({'connected': False, 'message': 'The operation was canceled'}, 'failed: The operation was canceled'),
])
def test_an_origin_that_does_not_answer_counts_as_blocked(answer, outcome):
    """Only WSAEACCES and WSAECONNREFUSED say where a connect stopped on Windows: no answer or unreachable could be
    another filter on the host, so it fails (a possible false red for a silent, down origin; never a false green)."""
    host = Host(connects={'10.1.2.3': answer})
    with pytest.raises(wf.TransactionFailed) as failed:
        transact_origins(host)
    assert host.actions()[-1] == 'restore'
    row, = failed.value.details['verification']['origins']
    assert row['state'] == 'blocked' and row['verdict'].startswith('blocked: %s - nothing proves' % outcome), row


def test_udp_origins_and_networks_are_not_checked_and_need_no_connect():
    host = Host()
    result, report = transact_origins(host, given=[{'host': '10.1.2.0/24', 'port': 22},
                                                   {'host': '10.1.2.9', 'port': 53, 'protocol': 'udp'}])
    assert host.actions() == ['apply', 'probe', 'confirm']
    assert [(r['address'], r['checked'], r['state']) for r in result['verification']['origins']] == [
        ('10.1.2.0/24', False, 'not checked'), ('10.1.2.9/32', False, 'not checked')]
    assert report['checked'] is False
    assert result['verification']['origins'][1]['verdict'].startswith('not checked: a UDP datagram')


def test_origins_are_checked_without_verify_as_on_linux_and_then_the_apply_waits_for_the_verdict():
    host = Host(connects={'10.1.2.3': REFUSED})
    result, report = transact_origins(host, verify=False)
    assert host.actions() == ['apply', 'connect', 'confirm']
    assert host.calls[0][1]['prepared']['transaction']['verify'] is True
    assert result['verification'] is None and report['verification'][0]['state'] == 'refused'
    with pytest.raises(wf.TransactionFailed, match=r'^verification failed after applying the rules - origins: 10\.1\.2\.3'):
        transact_origins(Host(connects={'10.1.2.3': BLOCKED}), verify=False)


def test_check_mode_connects_to_nothing_and_no_change_still_checks():
    host = Host(connects={'10.1.2.3': BLOCKED})
    transact_origins(host, check_mode=True)
    assert host.actions() == ['apply']
    host = Host(changed=False, connects={'10.1.2.3': BLOCKED})
    with pytest.raises(wf.TransactionFailed, match=r'^verification failed - origins: .*Nothing was changed by this run\.$'):
        transact_origins(host)
    assert host.actions() == ['apply', 'probe', 'connect']


def test_a_failed_connect_step_counts_every_origin_as_blocked():
    host = Host(fail={'connect': 'Exception calling "Parse"'})
    with pytest.raises(wf.TransactionFailed, match=r'not checked: the connect step failed \(Exception calling "Parse"\)'):
        transact_origins(host)
    assert host.actions() == ['apply', 'probe', 'connect', 'restore']


def test_verify_origins_are_resolved_on_the_host_and_checked_without_being_allowed():
    host = Host(names={'intranet.corp': ['10.7.0.5']}, connects={'10.7.0.5': BLOCKED})
    with pytest.raises(wf.TransactionFailed) as failed:
        transact_origins(host, given=[], verify_origins=[{'host': 'intranet.corp', 'port': 443}], default_deny=False)
    assert host.actions() == ['origins', 'apply', 'probe', 'connect', 'restore']
    assert host.calls[0][1]['prepared']['resolve'] == ['intranet.corp']
    assert 'origin' not in [r['purpose'] for r in host.calls[1][1]['prepared']['rules']]
    assert failed.value.details['verification']['origins'][0]['source'] == 'variable verify.origins[0]'
    with pytest.raises(wf.RuleError, match=r'variable verify.origins\[0\]: cannot resolve nowhere.corp'):
        transact_origins(Host(), given=[], verify_origins=[{'host': 'nowhere.corp', 'port': 443}])


def test_the_windows_rows_have_linuxs_shape_and_the_same_judgement():
    """One judge: the same (outcome, left) gives Linux's ok and state; only the words for the evidence differ."""
    allowed = [{'host': 'app', 'addresses': ['10.1.2.3/32'], 'port': 8080, 'protocol': 'tcp', 'source': 'x'}]
    for answer in ({}, REFUSED, BLOCKED, {'connected': False, 'timed_out': True}):
        outcome = wf.connect_outcome(dict({'connected': True}, **answer))
        linux = wf.origins.check(allowed, {}, {('10.1.2.3', 8080): outcome})
        windows = wf.origins.check(allowed, {}, {('10.1.2.3', 8080): outcome}, wf.WINDOWS_EVIDENCE)
        assert [set(r) for r in windows[1]] == [set(r) for r in linux[1]] == [ROW_KEYS]
        assert [(r['ok'], r['state']) for r in windows[1]] == [(r['ok'], r['state']) for r in linux[1]]
        assert windows[0] == linux[0]
    assert wf.connect_outcome({'connected': False, 'error': 10013}) == ('WSAEACCES (10013): access denied on this host', False)
    assert wf.connect_outcome({'connected': False, 'error': 10061}) == ('refused', True)
    assert wf.connect_outcome({'connected': True}) == ('connected', True)
