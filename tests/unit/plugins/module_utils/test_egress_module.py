# -*- coding: utf-8 -*-
"""egress_module's command runner with a real AnsibleModule and commands that cannot start.

``AnsibleModule.run_command`` calls fail_json - and so ends the process - when a command cannot start (OSError),
unless asked not to: in the middle of a transaction that meant no restore. Here such a command must be an ordinary
failure that the transaction restores after, and the restore itself must survive one.
"""

from __future__ import annotations

import os
from unittest import mock

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    egress_module, egress_request, egress_revert, egress_transaction as tx)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.firewalld_client import Firewalld
from tests.support.module_runner import run_module

MISSING = '/nonexistent/tunnelwall-no-such-command'


@pytest.fixture
def module():
    with patch_module_args({}):
        yield AnsibleModule(argument_spec={})


def test_a_command_that_cannot_start_is_rc_127_or_126_not_the_end_of_the_module(module, tmp_path):
    run = egress_module.command_runner(module)
    assert run([MISSING, '--reload']) == (127, '', 'cannot run %s: No such file or directory' % MISSING)
    not_executable = tmp_path / 'firewall-cmd'
    not_executable.write_text('#!/bin/sh\nexit 0\n')
    not_executable.chmod(0o644)
    rc, out, err = run([str(not_executable)])
    assert (rc, out) == (126, '') and err == 'cannot run %s: Permission denied' % not_executable
    # A command that starts still gives its own result, data included.
    assert egress_module.command_runner(module, binary_data=True)(['cat'], data='x\n') == (0, 'x\n', '')


class BrokenReloadBackend:
    """Writes one file, then fails; its reload command cannot start."""

    def __init__(self, root):
        self.path = os.path.join(root, 'rules')
        self.record_path = os.path.join(root, 'pending.json')

    def plan(self):
        return {'changed': True}

    def files(self):
        return [self.path]

    def reload_commands(self):
        return [[MISSING, '--reload']]

    def apply(self):
        egress_revert.write_durably(self.path, 'new\n')
        raise tx.EgressError('firewall-cmd --policy failed (rc=127): cannot run firewall-cmd')

    def commit(self):
        raise AssertionError('never reached')


def test_the_transaction_restores_when_its_reload_cannot_start(module, tmp_path):
    (tmp_path / 'rules').write_text('old\n')
    backend = BrokenReloadBackend(str(tmp_path))
    request = egress_request.build({'rules': [], 'confirm_timeout': 0, 'lock_timeout': 1}, 'firewalld')
    with pytest.raises(tx.EgressError) as error:
        tx.run(backend, request, None, run_dir=str(tmp_path / 'run'), command=egress_module.command_runner(module))
    message = str(error.value)
    assert message.startswith('firewall-cmd --policy failed (rc=127)')
    assert 'ROLLBACK INCOMPLETE: files restored, but %s --reload failed (rc=127): cannot run %s' % (MISSING, MISSING) \
        in message
    # The record stays, so that the next run (and the boot check) try the restore again; the next run says so.
    assert 'the pending record %s stays' % backend.record_path in message
    assert (tmp_path / 'rules').read_text() == 'old\n' and os.path.exists(backend.record_path)
    with pytest.raises(tx.EgressError, match=r'^a previous run \(.*never confirmed its change: files restored, '
                       r'but .* This run changed nothing'):
        tx.run(backend, request, None, run_dir=str(tmp_path / 'run'), command=egress_module.command_runner(module))
    assert (tmp_path / 'rules').read_text() == 'old\n' and os.path.exists(backend.record_path)


def test_the_revert_survives_a_runner_that_raises(tmp_path):
    target = tmp_path / 'rules'
    target.write_text('new\n')
    record = tmp_path / 'pending.json'
    egress_revert.write_durably(str(record), '{"id": "1-1", "files": {"%s": "old\\n"}}' % target, 0o600)

    def run(argv):
        raise FileNotFoundError(2, 'No such file or directory', argv[0])
    outcome = egress_revert.restore(str(record), {'files': [str(target)], 'reload': [['x']]}, run)
    assert outcome.status == egress_revert.PARTIAL and outcome.message.startswith('files restored, but x failed (rc=127)')
    assert len(outcome.problems) == 1 and outcome.problems[0].startswith('x failed (rc=127)')
    assert target.read_text() == 'old\n' and record.exists()  # kept for the next attempt


def test_firewalld_without_dbus_send_says_what_to_install(module, tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))  # an empty directory: no dbus-send, no firewall-cmd
    with pytest.raises(tx.EgressError, match=r"^Get: cannot run dbus-send: No such file or directory: install D-Bus's"):
        Firewalld(egress_module.command_runner(module), config_dir=str(tmp_path)).state()


def test_firewalld_egress_fails_with_its_own_message_when_dbus_send_cannot_start(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    monkeypatch.setattr(os, 'geteuid', lambda: 0)  # past the root check, whoever runs the test
    result = run_module('firewalld_egress', {'rules': [], 'name': 'tw'})
    assert result['failed'] and result['msg'].startswith('Get: cannot run dbus-send:'), result
    assert result['module'] == 'tunnelwall.cloudflared.firewalld_egress'
    assert 'exception' not in result


@pytest.mark.parametrize('options, message', [
    ({'rules': [], 'name': 'tw\n'}, "name='tw\\n': expected ASCII letters"),  # egress_request
    ({'rules': [], 'verify': {'plan': {}, 'retries': 3}}, 'verify: unsupported option retries'),  # the probe's options
    ({'rules': [], 'verify': {'plan': {'version': 2}}}, 'verify.plan: version 2 is not an egress plan'),
    ({'rules': [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32']}], 'default_deny': True,
      'dns_servers': ['198.51.100.253'], 'cloudflared_config': '/nonexistent/tw.yml'},
     'cloudflared_config: cannot read /nonexistent/tw.yml'),  # origins
])
def test_a_failure_prepare_reports_names_the_module_in_its_own_key(options, message, monkeypatch):
    """egress_module.prepare's refusals: the message as it is, the module's FQCN in ``module`` (what the role reads to
    tell a failure the module reported from a crash)."""
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    for name in ('firewalld_egress', 'ufw_egress', 'nftables_egress'):
        result = run_module(name, dict(options, resolv_conf='/nonexistent/resolv.conf'))
        assert result['failed'] and result['msg'].startswith(message), (name, result)
        assert result['module'] == 'tunnelwall.cloudflared.%s' % name, result


def test_fail_and_succeed_put_the_fqcn_next_to_the_result(module):
    with pytest.raises(SystemExit), mock.patch.object(module, 'fail_json', side_effect=SystemExit) as fail_json:
        egress_module.fail(module, 'ufw_egress', 'ufw is not installed', origins=None)
    fail_json.assert_called_once_with(msg='ufw is not installed', module='tunnelwall.cloudflared.ufw_egress', origins=None)
    with pytest.raises(SystemExit), mock.patch.object(module, 'exit_json', side_effect=SystemExit) as exit_json:
        egress_module.succeed(module, 'nftables_egress', changed=False)
    exit_json.assert_called_once_with(module='tunnelwall.cloudflared.nftables_egress', changed=False)
