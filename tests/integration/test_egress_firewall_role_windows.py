# -*- coding: utf-8 -*-
"""The egress_firewall role's Windows branch: what it hands win_firewall_egress and win_edge_probe.

No Windows and no PowerShell runtime exist here, so the role runs against a host Ansible takes for Windows
(`ansible_shell_type: powershell`) from a copy of the installed collection in which the two Windows action
plugins record their arguments instead of reaching a host: win_firewall_egress runs its real validation and
preparation (plugin_utils/windows_firewall.py) and records the prepared arguments the PowerShell module would
get; win_edge_probe records its options and answers as a probe would - met, or not met - as the test says.
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


class ActionModule(Real):
    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        with open(os.environ['TW_RECORD'], 'a') as handle:
            handle.write(json.dumps({'module': module_name, 'args': module_args}) + '\\n')
        return {'changed': True}
'''

PROBE_RECORDER = '''
import json, os
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.probe_options import PROBE_ARGUMENT_SPEC


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        params = ArgumentSpecValidator(PROBE_ARGUMENT_SPEC).validate(self._task.args).validated_parameters
        with open(os.environ['TW_RECORD'], 'a') as handle:
            handle.write(json.dumps({'module': 'win_edge_probe', 'args': params}) + '\\n')
        unmet = json.loads(os.environ['TW_PROBE_UNMET'])
        return {'changed': False, 'failed': bool(unmet), 'unmet_requirements': unmet, 'summary': [], 'results': []}
'''

PLAYBOOK = '''
- hosts: winhost
  gather_facts: false
  roles:
    - role: tunnelwall.cloudflared.egress_firewall
      vars:
        egress_firewall_default_deny: true
        egress_firewall_dns_servers: [203.0.113.53]
        egress_firewall_purposes: tunnel, api
        egress_firewall_windows_profiles: [Domain, Public]
'''


@pytest.fixture
def windows_collection(tmp_path):
    """A copy of the installed collection whose Windows action plugins record instead of running."""
    installed = os.path.join(os.environ['ANSIBLE_COLLECTIONS_PATH'].split(os.pathsep)[0], *COLLECTION)
    copy = tmp_path / 'collections'
    shutil.copytree(installed, copy.joinpath(*COLLECTION))
    actions = copy.joinpath(*COLLECTION, 'plugins', 'action')
    (actions / 'win_firewall_egress.py').rename(actions / '_win_firewall_egress_real.py')
    (actions / 'win_firewall_egress.py').write_text(FIREWALL_RECORDER)
    (actions / 'win_edge_probe.py').write_text(PROBE_RECORDER)
    return copy


def run_role(tmp_path, collections, dns, unmet=()):
    record = tmp_path / 'record.jsonl'
    record.write_text('')
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(json.dumps({'all': {'hosts': {'winhost': {
        'ansible_connection': 'local', 'ansible_shell_type': 'powershell',
        'tunnelwall_edge_nameservers': [dns.address], 'tunnelwall_edge_dns_port': dns.port,
        'tunnelwall_edge_trusted_ranges': list(edge_zone.LAB_RANGES)}}}}))
    playbook = tmp_path / 'play.yml'
    playbook.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), PYTHONPATH=str(collections), ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOME=str(tmp_path / 'home'), TW_RECORD=str(record), TW_PROBE_UNMET=json.dumps(list(unmet)))
    result = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', str(inventory), str(playbook)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    return result.returncode, result.stdout + result.stderr, calls


def test_the_role_hands_windows_the_plans_rules_then_verifies(tmp_path, windows_collection, dns):
    rc, output, calls = run_role(tmp_path, windows_collection, dns)
    assert rc == 0, output
    assert [c['module'] for c in calls] == ['tunnelwall.cloudflared.win_firewall_egress', 'win_edge_probe'], calls
    prepared = calls[0]['args']['prepared']
    assert prepared['group'] == 'tunnelwall cloudflared' and prepared['state'] == 'present'
    assert prepared['default_deny'] is True and prepared['profiles'] == ['Domain', 'Public']
    purposes = {rule['purpose'] for rule in prepared['rules']}
    assert purposes == {'tunnel', 'api', 'dns'}, prepared['rules']  # update left out by egress_firewall_purposes
    tunnel = [rule for rule in prepared['rules'] if rule['purpose'] == 'tunnel']
    assert {rule['protocol'] for rule in tunnel} == {'tcp', 'udp'} and all(rule['port'] == 7844 for rule in tunnel)
    assert '198.51.100.11/32' in tunnel[0]['addresses'] and '2001:db8:e::11/128' in tunnel[0]['addresses']
    assert [r['addresses'] for r in prepared['rules'] if r['purpose'] == 'dns'][0] == ['203.0.113.53/32']
    probe = calls[1]['args']
    assert probe['require'] == ['any_tunnel']
    assert {e['purpose'] for e in probe['plan']['endpoints']} == {'tunnel', 'api'}


def test_a_failed_verification_on_windows_lifts_the_default_block_and_fails(tmp_path, windows_collection, dns):
    unmet = ['any_tunnel: quic udp/7844 timeout: 198.51.100.11. To fix: open outbound UDP 7844 to 198.51.100.11/32 (tunnel)']
    rc, output, calls = run_role(tmp_path, windows_collection, dns, unmet=unmet)
    assert rc != 0
    assert [c['module'] for c in calls] == ['tunnelwall.cloudflared.win_firewall_egress', 'win_edge_probe',
                                            'tunnelwall.cloudflared.win_firewall_egress'], calls
    lifted = calls[2]['args']['prepared']
    assert lifted['default_deny'] is False and lifted['rules'] == [r for r in calls[0]['args']['prepared']['rules']
                                                                   if r['purpose'] != 'dns']
    assert 'egress_firewall on winhost (windows): verification failed after applying the rules - any_tunnel: quic' in output
    assert 'The default outbound block was lifted; the allow rules stay.' in output
