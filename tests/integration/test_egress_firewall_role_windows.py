# -*- coding: utf-8 -*-
"""The egress_firewall role's Windows branch: one task, and what its action hands the Windows modules.

No Windows and no PowerShell runtime exist here, so the role runs against a host Ansible takes for Windows
(`ansible_shell_type: powershell`) from a copy of the installed collection in which win_firewall_egress's action
plugin is the real one - its validation, rules, QUIC datagrams and transaction run for real - except that its module
runs are recorded and answered as the PowerShell modules would answer: apply (with the state it recorded),
win_edge_probe (every check answering, or none), confirm and restore. The task's final result is recorded too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import edge_zone

BIN = os.path.dirname(sys.executable)
COLLECTION = ('ansible_collections', 'tunnelwall', 'cloudflared')

FIREWALL_RECORDER = '''
import json, os
from ansible_collections.tunnelwall.cloudflared.plugins.action._win_firewall_egress_real import ActionModule as Real

PREVIOUS = {'group': 'tunnelwall cloudflared', 'rules': [], 'outbound': {'Domain': 'Allow', 'Public': 'Allow'}}


def record(entry):
    with open(os.environ['TW_RECORD'], 'a') as handle:
        handle.write(json.dumps(entry) + '\\n')


class ActionModule(Real):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        record({'module': 'result', 'args': result})
        return result

    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        record({'module': module_name, 'args': module_args})
        prepared = module_args['prepared']
        if prepared.get('action') == 'origins':
            # The read-only step: a Cloudflared service whose ImagePath names its config, one origin by name.
            found = {'service': None, 'file': None, 'resolved': {}, 'unresolved': {}}
            if prepared['service'] == 'Cloudflared':
                found['service'] = {'name': 'Cloudflared', 'account': '', 'profile': None,
                                    'image_path': '"C:\\\\cf\\\\cloudflared.exe" --config C:\\\\cf\\\\config.yml tunnel run'}
            if 'C:\\\\cf\\\\config.yml' in prepared['read']:
                found['file'] = {'path': 'C:\\\\cf\\\\config.yml',
                                 'text': 'ingress:\\n  - hostname: app.example.com\\n    service: https://app.corp:8443\\n'
                                         '  - service: http_status:404\\n'}
            for name in prepared['resolve']:
                found['resolved'][name] = ['10.1.2.4']
            return {'changed': False, 'origins': found}
        if prepared.get('action') == 'connect':
            # The read-only connect step after the change: connected, or the Winsock code TW_ORIGIN names.
            code = {'blocked': 10013, 'refused': 10061}.get(os.environ.get('TW_ORIGIN'))
            return {'changed': False, 'connects': [
                {'address': t['address'], 'port': t['port'], 'connected': code is None, 'error': code,
                 'timed_out': False, 'message': None} for t in prepared['targets']]}
        if module_name.endswith('win_edge_probe'):
            ok = os.environ['TW_PROBE_OK'] == '1'
            rows = [{'id': t['id'], 'check': c, 'ok': ok and c != 'quic', 'error_kind': None if ok and c != 'quic' else 'timeout',
                     'message': 'no answer'} for t in prepared['targets'] for c in t['checks']]
            return {'families': ['ipv4', 'ipv6'], 'results': rows, 'dns': {'nameservers': [], 'answers': []}}
        txn = prepared['transaction']
        if prepared['action'] == 'apply' and os.environ.get('TW_APPLY') == 'refuse':
            # The module's own refusal, before any change: it names itself (module) as every result of it does.
            return {'failed': True, 'changed': False, 'module': 'tunnelwall.cloudflared.win_firewall_egress',
                    'msg': "the rule group 'tunnelwall cloudflared' holds rules this module did not create (no "
                           "description 'Managed by tunnelwall.cloudflared'): x; choose another name. Nothing was changed"}
        if prepared['action'] == 'apply' and os.environ.get('TW_APPLY') == 'crash':
            # What ansible-core's PowerShell wrapper returns for an unhandled exception: not the module's result.
            return {'failed': True, 'msg': 'Unhandled exception while executing module: Access is denied',
                    'exception': 'at <ScriptBlock>, <No file>: line 400'}
        if prepared['action'] == 'confirm':
            return {'changed': False, 'confirmed': True}
        if prepared['action'] == 'restore':
            return {'changed': True, 'restored': True, 'message': 'restored'}
        return {'changed': True, 'added': [r['display_name'] for r in prepared['rules']], 'removed': [], 'updated': [],
                'previous': PREVIOUS, 'transaction': {'settled': None, 'confirmed': not txn['verify'], 'armed': {
                    'how': 'scheduled_task', 'task_path': txn['task_path'], 'task_name': txn['task_name'],
                    'at': '2026-11-29T00:10:00+00:00', 'confirm_timeout': txn['confirm_timeout']}}}
'''

PLAYBOOK = '''
- hosts: winhost
  gather_facts: false
  roles:
    - role: tunnelwall.cloudflared.egress_firewall
      vars:
        egress_firewall_state: %(state)s
        egress_firewall_default_deny: true
        egress_firewall_dns_servers: [203.0.113.53]
        egress_firewall_purposes: tunnel, api
        egress_firewall_windows_profiles: [Domain, Public]
        egress_firewall_confirm_timeout: 90
'''


@pytest.fixture
def windows_collection(tmp_path):
    """A copy of the installed collection whose win_firewall_egress action records its module runs."""
    installed = os.path.join(os.environ['ANSIBLE_COLLECTIONS_PATH'].split(os.pathsep)[0], *COLLECTION)
    copy = tmp_path / 'collections'
    shutil.copytree(installed, copy.joinpath(*COLLECTION))
    actions = copy.joinpath(*COLLECTION, 'plugins', 'action')
    (actions / 'win_firewall_egress.py').rename(actions / '_win_firewall_egress_real.py')
    (actions / 'win_firewall_egress.py').write_text(FIREWALL_RECORDER)
    return copy


def run_role(tmp_path, collections, dns, probe_ok=True, state='present', keep_origins=False, apply='', origin=''):
    record = tmp_path / 'record.jsonl'
    record.write_text('')
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(json.dumps({'all': {'hosts': {'winhost': {
        'ansible_connection': 'local', 'ansible_shell_type': 'powershell',
        'tunnelwall_edge_nameservers': [dns.address], 'tunnelwall_edge_dns_port': dns.port,
        'tunnelwall_edge_trusted_ranges': list(edge_zone.LAB_RANGES)}}}}))
    playbook = tmp_path / 'play.yml'
    playbook.write_text(PLAYBOOK % {'state': state})
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), PYTHONPATH=str(collections), ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOME=str(tmp_path / 'home'), TW_RECORD=str(record), TW_PROBE_OK='1' if probe_ok else '0', TW_APPLY=apply,
               TW_ORIGIN=origin)
    result = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', str(inventory), str(playbook)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    if not keep_origins:  # the read-only origins steps come first; test_origins_... looks at them
        calls = [c for c in calls if c['args'].get('prepared', {}).get('action') != 'origins']
    return result.returncode, result.stdout + result.stderr, calls


def steps(calls):
    return [c['args']['prepared'].get('action') if c['module'].endswith('win_firewall_egress')
            else c['module'].rsplit('.', 1)[-1] for c in calls]


def test_one_task_applies_the_plans_rules_verifies_and_confirms(tmp_path, windows_collection, dns):
    rc, output, calls = run_role(tmp_path, windows_collection, dns)
    assert rc == 0, output
    # After the probe the host connects to the config's origin (10.1.2.4:8443); connected, so confirmed.
    assert steps(calls) == ['apply', 'win_edge_probe', 'connect', 'confirm', 'result'], calls
    # One task on the host side of the role: no probe task, no rescue juggling.
    assert output.count('TASK [tunnelwall.cloudflared.egress_firewall : Apply, verify and confirm') == 1, output
    assert 'Probe the tunnel edge' not in output and 'Lift the default' not in output
    prepared = calls[0]['args']['prepared']
    assert prepared['group'] == 'tunnelwall cloudflared' and prepared['state'] == 'present'
    assert prepared['default_deny'] is True and prepared['profiles'] == ['Domain', 'Public']
    txn = prepared['transaction']
    assert txn['confirm_timeout'] == 90 and txn['verify'] is True and txn['task_path'] == '\\tunnelwall\\'
    assert txn['task_name'] == 'egress revert ' + txn['id']
    purposes = {rule['purpose'] for rule in prepared['rules']}
    # update left out by egress_firewall_purposes; origin: the service's config (test_origins_of_the_services_config_...)
    assert purposes == {'tunnel', 'api', 'dns', 'origin'}, prepared['rules']
    tunnel = [rule for rule in prepared['rules'] if rule['purpose'] == 'tunnel']
    assert {rule['protocol'] for rule in tunnel} == {'tcp', 'udp'} and all(rule['port'] == 7844 for rule in tunnel)
    assert '198.51.100.11/32' in tunnel[0]['addresses'] and '2001:db8:e::11/128' in tunnel[0]['addresses']
    assert [r['addresses'] for r in prepared['rules'] if r['purpose'] == 'dns'][0] == ['203.0.113.53/32']
    # The probe runs on what the role allows, with datagrams built on the controller.
    probe = calls[1]['args']['prepared']
    assert {t['purpose'] for t in probe['targets']} == {'tunnel', 'api'}
    assert any(t['attempts'][0]['datagrams'] for t in probe['targets'] if t['protocol'] == 'udp')  # built on the controller
    assert calls[2]['args']['prepared']['targets'] == [{'address': '10.1.2.4', 'port': 8443}]
    assert calls[3]['args']['prepared']['transaction']['id'] == txn['id']
    result = calls[4]['args']
    assert result['module'] == 'tunnelwall.cloudflared.win_firewall_egress'
    assert result['verification']['unmet_requirements'] == [] and result['verification']['recommended_protocol'] == 'http2'
    assert result['transaction']['confirmed'] is True and result['transaction']['armed']['how'] == 'scheduled_task'


def test_a_failed_verification_restores_what_the_host_recorded_and_fails(tmp_path, windows_collection, dns):
    rc, output, calls = run_role(tmp_path, windows_collection, dns, probe_ok=False)
    assert rc != 0
    assert steps(calls) == ['apply', 'win_edge_probe', 'connect', 'restore', 'result'], calls
    assert calls[3]['args']['prepared']['transaction']['id'] == calls[0]['args']['prepared']['transaction']['id']
    assert ('egress_firewall on winhost (windows): verification failed after applying the rules '
            '- any_tunnel') in output
    assert ("Rolled back: the 0 rule(s) of group 'tunnelwall cloudflared' as before and the default outbound actions "
            'Domain=Allow, Public=Allow.') in output
    result = calls[4]['args']
    assert result['failed'] is True and result['rolled_back'] is True and result['transaction']['restored'] is True
    assert result['verification']['unmet_requirements']
    assert result['module'] == 'tunnelwall.cloudflared.win_firewall_egress'


@pytest.mark.parametrize('apply, says', [
    ('refuse', "egress_firewall on winhost (windows): the rule group 'tunnelwall cloudflared' holds rules this module "
               "did not create (no description 'Managed by tunnelwall.cloudflared'): x; choose another name. Nothing was "
               "changed Nothing to roll back: the firewall is as before this run."),
    ('crash', 'egress_firewall on winhost (windows): Unhandled exception while executing module: Access is denied The '
              'module stopped before it could say what it changed: check the firewall; a change it had begun is undone '
              'by the dead-man revert within egress_firewall_confirm_timeout (90 s).'),
])
def test_the_role_tells_a_failure_the_module_reported_from_one_it_never_got_to_report(
        tmp_path, windows_collection, dns, apply, says):
    """The apply fails: reported by the module (its result names it in module) it came before any change; an
    unhandled exception (no module) may have come half-way, and the role must not claim the firewall is as before."""
    rc, output, calls = run_role(tmp_path, windows_collection, dns, apply=apply)
    assert rc != 0
    assert steps(calls) == ['apply', 'result'], calls
    assert says in output, output
    result = calls[1]['args']
    assert result['failed'] is True and 'rolled_back' not in result
    assert result.get('module') == ('tunnelwall.cloudflared.win_firewall_egress' if apply == 'refuse' else None), result


def test_absent_is_one_module_run_without_verification(tmp_path, windows_collection, dns):
    rc, output, calls = run_role(tmp_path, windows_collection, dns, state='absent')
    assert rc == 0, output
    assert steps(calls) == ['apply', 'result'], calls
    prepared = calls[0]['args']['prepared']
    assert prepared['state'] == 'absent' and prepared['rules'] == [] and prepared['transaction']['verify'] is False
    assert calls[1]['args']['verification'] is None and calls[1]['args']['transaction']['confirmed'] is True


def test_origins_of_the_services_config_are_read_on_the_host_and_allowed(tmp_path, windows_collection, dns):
    """cloudflared_config auto on Windows: the Cloudflared service's --config (its ImagePath) read on the host, parsed
    on the controller by the Linux parser, its origin name resolved on the host; the apply carries the origin rule."""
    rc, output, calls = run_role(tmp_path, windows_collection, dns, keep_origins=True)
    assert rc == 0, output
    assert steps(calls) == ['origins', 'origins', 'origins', 'apply', 'win_edge_probe', 'connect', 'confirm', 'result'], calls
    asked = [c['args']['prepared'] for c in calls[:3]]
    assert asked[0]['service'] == 'Cloudflared' and asked[1]['read'] == ['C:\\cf\\config.yml']
    assert asked[2]['resolve'] == ['app.corp']
    rules = [r for r in calls[3]['args']['prepared']['rules'] if r['purpose'] == 'origin']
    assert rules == [{'purpose': 'origin', 'protocol': 'tcp', 'port': 8443, 'addresses': ['10.1.2.4/32'],
                      'display_name': 'tunnelwall cloudflared: origin tcp/8443'}], rules
    report = calls[-1]['args']['origins']
    assert report['config']['path'] == 'C:\\cf\\config.yml' and report['config']['how'].startswith('the --config')
    assert report['allowed'][0]['source'] == 'C:\\cf\\config.yml ingress[0] (hostname app.example.com) (https)'
    assert report['checked'] is True and report['verification'][0]['state'] == 'reachable'


@pytest.mark.parametrize('origin, blocked', [('blocked', True), ('refused', False)])
def test_a_default_deny_that_blocks_an_origin_fails_verification_and_is_restored(
        tmp_path, windows_collection, dns, origin, blocked):
    """The edge answers, but Windows Firewall refuses the connect to the config's origin (WSAEACCES): the role fails
    and the host is restored - never a green for a tunnel whose app is unreachable. A refusal by the origin itself
    (WSAECONNREFUSED: the origin is down) is not this host's firewall and is confirmed."""
    rc, output, calls = run_role(tmp_path, windows_collection, dns, origin=origin)
    result = calls[-1]['args']
    row, = result['origins']['verification']
    if not blocked:
        assert rc == 0, output
        assert steps(calls) == ['apply', 'win_edge_probe', 'connect', 'confirm', 'result'], calls
        assert (row['ok'], row['state']) == (True, 'refused') and result['verification']['origins'] == [row]
        return
    assert rc != 0
    assert steps(calls) == ['apply', 'win_edge_probe', 'connect', 'restore', 'result'], calls
    assert ('egress_firewall on winhost (windows): verification failed after applying the rules - origins: 10.1.2.4 '
            'port 8443 (app.corp, C:\\cf\\config.yml ingress[0] (hostname app.example.com) (https)): blocked: '
            'WSAEACCES (10013)') in output.replace('\\\\', '\\'), output
    assert result['rolled_back'] is True and result['transaction']['restored'] is True
    assert (row['checked'], row['ok'], row['state']) == (True, False, 'blocked')
    # The edge was fine: the origin alone failed the verification.
    assert [line[:30] for line in result['verification']['unmet_requirements']] == ['origins: 10.1.2.4 port 8443 (a']
