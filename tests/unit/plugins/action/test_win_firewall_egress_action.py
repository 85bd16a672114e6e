# -*- coding: utf-8 -*-
"""win_firewall_egress's action plugin itself: bad input is a failed result naming the option, never a traceback,
and a good request becomes module runs (answered here by a recording host)."""

from __future__ import annotations

from unittest import mock

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.tunnelwall.cloudflared.plugins.action.win_firewall_egress import ActionModule
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall as wf

from tests.unit.plugins.module_utils.test_probe_report import PLAN

RULES = [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32'], 'ipv6': []}]


class Recording(ActionModule):
    """The real action; its module runs answered by ``answer(module, args)`` and recorded."""

    def __init__(self, args, answer, check_mode=False):
        task = mock.MagicMock(args=args, check_mode=check_mode, async_val=0, diff=False)
        super().__init__(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None, shared_loader_obj=None)
        self.answer = answer
        self.calls = []

    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        self.calls.append((module_name, module_args))
        return self.answer(module_name, module_args)


def never(module, args):
    raise AssertionError('no module may run for a bad request: %s' % module)


def applied(module, args):
    prepared = args['prepared']
    if module == wf.PROBE_MODULE:
        return {'families': ['ipv4'], 'results': [{'id': t['id'], 'check': c, 'ok': c == 'tls', 'error_kind': 'timeout'}
                                                  for t in prepared['targets'] for c in t['checks']],
                'dns': {'nameservers': [], 'answers': []}}
    if prepared['action'] == 'confirm':
        return {'changed': False, 'confirmed': True}
    return {'changed': True, 'previous': {'group': prepared['group'], 'rules': [], 'outbound': {}},
            'transaction': {'armed': None, 'settled': None, 'confirmed': not prepared['transaction']['verify']}}


def test_bad_options_fail_naming_the_option_before_any_module_runs():
    cases = [
        ({'rules': RULES, 'name': 'tunnelwall\n'}, "name='tunnelwall\\n': expected ASCII letters"),
        ({'rules': [dict(RULES[0], purpose='api')], 'default_deny': True, 'dns_servers': ['203.0.113.53']},
         'default_deny=True: no tunnel destination in rules'),
        ({'default_deny': True}, 'state is present but all of the following are missing: rules'),
        ({'rules': RULES, 'confirm_timeout': 'soon'}, 'confirm_timeout'),
        ({'rules': RULES, 'verify': {'plan': {'rules': []}}}, 'verify.'),
        ({'rules': RULES, 'verify': {'require': ['quic']}}, 'plan'),
        # ansible-core's ArgumentSpecValidator raised a TypeError for these (a dict option with sub-options).
        ({'rules': RULES, 'verify': 42}, 'verify=42: expected a dict'),
        ({'rules': RULES, 'verify': [True]}, 'verify=[True]: expected a dict'),
    ]
    for args, message in cases:
        result = Recording(args, never).run(task_vars={})
        assert result['failed'] is True and message in result['msg'], (args, result)
        assert 'exception' not in result
        # The failure names the plugin in its own key, not in front of the message.
        assert result['module'] == 'tunnelwall.cloudflared.win_firewall_egress', result
        assert not result['msg'].startswith('win_firewall_egress'), result['msg']


def test_a_good_request_is_applied_verified_and_confirmed_with_the_old_name_warned():
    action = Recording({'rules': RULES, 'name': 'tunnelwall cloudflared', 'verify': {'plan': PLAN}, 'confirm_timeout': 60},
                       applied)
    result = action.run(task_vars={})
    assert not result.get('failed'), result
    assert result['module'] == 'tunnelwall.cloudflared.win_firewall_egress'
    assert [m for m, a in action.calls] == [wf.MODULE, wf.PROBE_MODULE, wf.MODULE]
    apply = action.calls[0][1]['prepared']
    assert apply['group'] == 'tunnelwall cloudflared' and apply['transaction']['confirm_timeout'] == 60
    assert result['transaction']['confirmed'] is True and result['verification']['recommended_protocol'] == 'http2'
    assert any("use name='tunnelwall'" in w for w in result['warnings'])


def test_a_connection_lost_after_apply_fails_naming_the_scheduled_task():
    def lost(module, args):
        if module == wf.MODULE and args['prepared']['action'] == 'apply':
            result = applied(module, args)
            result['transaction']['armed'] = {'how': 'scheduled_task', 'task_path': '\\tunnelwall\\',
                                              'task_name': 'egress revert x', 'at': '10:05'}
            return result
        raise AnsibleConnectionFailure('winrm: connection refused')

    result = Recording({'rules': RULES, 'verify': {'plan': PLAN}}, lost).run(task_vars={})
    assert result['failed'] is True and result['module'] == 'tunnelwall.cloudflared.win_firewall_egress'
    assert 'verification failed after applying the rules - connection lost: winrm: connection refused' in result['msg']
    assert 'ROLLBACK FAILED (connection lost: winrm: connection refused); the scheduled task \\tunnelwall\\egress ' \
           'revert x restores the previous state at 10:05' in result['msg']


def test_the_options_windows_shares_with_linux_have_their_spec():
    from ansible_collections.tunnelwall.cloudflared.plugins.action.win_firewall_egress import ARGUMENT_SPEC
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_spec import TRANSACTION_SPEC
    for option in ('name', 'default_deny', 'allow_dns', 'dns_servers', 'allow_dhcp', 'allow_mld', 'allow_metadata',
                   'confirm_timeout', 'lock_timeout', 'origins', 'private_networks', 'cloudflared_config'):
        assert ARGUMENT_SPEC[option] is TRANSACTION_SPEC[option], option
