# -*- coding: utf-8 -*-
"""egress_firewall_info's action: the module unchanged on POSIX hosts; on Windows the rule group of
win_firewall_egress read back (its read-only step) and compared with the plan and the origins resolved on the host."""

from __future__ import annotations

from unittest import mock

from ansible_collections.tunnelwall.cloudflared.plugins.action.egress_firewall_info import ActionModule, windows_info
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall as wf

GROUP = 'tunnelwall cloudflared'
PLAN = {'rules': [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32'], 'ipv6': []},
                  {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32'], 'ipv6': []},
                  {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32'], 'ipv6': []}]}
READ = [
    {'display_name': GROUP + ': tunnel tcp/7844', 'addresses': ['198.51.100.11/32', '198.51.100.12/32'],
     'description': wf.MARKER, 'protocol': 'tcp', 'port': '7844'},
    {'display_name': GROUP + ': api tcp/443', 'addresses': ['198.51.100.80/32'], 'description': wf.MARKER},
    {'display_name': GROUP + ': origin tcp/8443', 'addresses': ['10.1.2.4/32'], 'description': wf.MARKER},
    {'display_name': GROUP + ': dns udp/53', 'addresses': ['203.0.113.53/32'], 'description': wf.MARKER},
    {'display_name': 'other cloudflared: tunnel tcp/7844', 'addresses': ['192.0.2.9/32'], 'description': wf.MARKER},
]


def windows_host(rules=None, names=None):
    calls = []
    rules = READ if rules is None else rules

    def execute(module, args):
        prepared = args['prepared']
        calls.append(prepared)
        assert module == wf.MODULE
        if prepared['action'] == 'read':
            assert prepared['group'] == GROUP
            return {'changed': False, 'rules': rules}
        assert prepared['action'] == 'origins'
        found = {'service': None, 'file': None, 'resolved': {}, 'unresolved': {}}
        for name in prepared['resolve']:
            if name in (names or {}):
                found['resolved'][name] = names[name]
            else:
                found['unresolved'][name] = 'No such host is known'
        return {'changed': False, 'origins': found}
    return execute, calls


def params(**values):
    return dict({'name': 'tunnelwall', 'backend': 'auto', 'plan': PLAN, 'origins': None, 'private_networks': None,
                 'cloudflared_config': 'none'}, **values)


def test_applied_from_the_rule_group_by_purpose():
    assert wf.applied_from_rules(READ + [dict(READ[0], description='someone else')], 'tunnelwall') == {
        'api': ['198.51.100.80/32'], 'dns': ['203.0.113.53/32'], 'origin': ['10.1.2.4/32'],
        'tunnel': ['198.51.100.11/32', '198.51.100.12/32']}


def test_windows_drift_of_the_edge_and_of_the_origins_resolved_on_the_host():
    execute, calls = windows_host(names={'app.corp': ['10.1.2.5']})
    result = windows_info(params(), execute)
    assert [c['action'] for c in calls] == ['read']  # origins not asked for: not compared
    assert result['backend'] == 'windows' and result['applied_error'] is None and result['origins'] is None
    assert result['drift'] == {'new': 0, 'gone': 1, 'purposes': ['tunnel'], 'text': '+0/\u22121'}
    execute, calls = windows_host(names={'app.corp': ['10.1.2.5']})
    result = windows_info(params(origins=[{'host': 'app.corp', 'port': 8443}]), execute)
    assert [c['action'] for c in calls] == ['read', 'origins']
    assert result['origins']['rules'][0]['ipv4'] == ['10.1.2.5/32']
    # app.corp moved from 10.1.2.4 to 10.1.2.5: +1/-1 for origin, besides the tunnel's stale block.
    assert result['drift'] == {'new': 1, 'gone': 2, 'purposes': ['tunnel', 'origin'], 'text': '+1/\u22122'}
    execute, calls = windows_host()
    result = windows_info(params(origins=[{'host': 'gone.corp', 'port': 8443}]), execute)
    assert 'cannot resolve gone.corp' in result['origins']['error'] and result['drift']['purposes'] == ['tunnel']


def test_a_group_that_cannot_be_read_says_why():
    result = windows_info(params(), lambda module, args: {'failed': True, 'msg': 'Access denied'})
    assert result['applied'] is None and result['applied_error'] == 'Access denied' and result['drift'] is None


class Identity:
    """A templar for variables that hold no template."""

    @staticmethod
    def template(value):
        return value


class Action(ActionModule):
    def __init__(self, args, shell_type, answer):
        task = mock.MagicMock(args=args, check_mode=False, async_val=0, diff=False)
        super().__init__(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=Identity(), shared_loader_obj=None)
        self.shell_type = shell_type
        self.answer = answer
        self.calls = []

    def run(self, tmp=None, task_vars=None):
        # The host's shell type, as an inventory sets it (known_variables.windows_host reads it).
        return super().run(tmp, dict(task_vars or {}, ansible_shell_type=self.shell_type))

    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        self.calls.append((module_name, module_args))
        return self.answer(module_name, module_args)


def test_the_action_runs_the_module_on_posix_and_reads_the_windows_firewall_on_windows():
    posix = Action({'name': 'tunnelwall'}, 'sh', lambda module, args: {'backend': 'nftables', 'applied': {}})
    assert posix.run(task_vars={})['backend'] == 'nftables' and posix.calls == [(None, None)]
    execute, dummy = windows_host()
    windows = Action({'plan': PLAN}, 'powershell', execute)
    result = windows.run(task_vars={})
    assert result['backend'] == 'windows' and result['drift']['text'] == '+0/\u22121'
    bad = Action({'backend': 'ufw'}, 'powershell', execute)
    assert bad.run(task_vars={})['msg'].startswith('egress_firewall_info: value of backend must be one of: auto, windows')
