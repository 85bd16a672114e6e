# -*- coding: utf-8 -*-
"""The check playbook on a Windows host: the probe and the drift (egress_firewall_info's action reading the rule
group of win_firewall_egress), with the Windows modules' runs answered as the PowerShell modules would answer.

No Windows and no PowerShell runtime exist here: the host is one Ansible takes for Windows
(`ansible_shell_type: powershell`, local connection), and a copy of the installed collection answers the module runs
of the two action plugins (win_edge_probe's and egress_firewall_info's) - the actions themselves, the playbook and
the report are the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.support import edge_zone

BIN = os.path.dirname(sys.executable)
COLLECTION = ('ansible_collections', 'tunnelwall', 'cloudflared')

PROBE = '''
from ansible_collections.tunnelwall.cloudflared.plugins.action._win_edge_probe_real import ActionModule as Real


class ActionModule(Real):
    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        prepared = module_args['prepared']
        rows = [{'id': t['id'], 'check': c, 'ok': True, 'error_kind': None, 'message': 'ok'}
                for t in prepared['targets'] for c in t['checks']]
        return {'families': ['ipv4', 'ipv6'], 'results': rows, 'dns': {'nameservers': [], 'answers': []}}
'''

INFO = '''
import json, os
from ansible_collections.tunnelwall.cloudflared.plugins.action._egress_firewall_info_real import ActionModule as Real


class ActionModule(Real):
    def _execute_module(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        prepared = module_args['prepared']
        assert module_name == 'tunnelwall.cloudflared.win_firewall_egress', module_name
        if prepared['action'] == 'read':
            return {'changed': False, 'rules': json.loads(os.environ['TW_RULES'])}
        found = {'service': None, 'file': None, 'resolved': {}, 'unresolved': {}}
        for name in prepared['resolve']:
            found['resolved'][name] = ['10.1.2.5']
        return {'changed': False, 'origins': found}
'''


def collection_copy(tmp_path):
    installed = os.path.join(os.environ['ANSIBLE_COLLECTIONS_PATH'].split(os.pathsep)[0], *COLLECTION)
    copy = tmp_path / 'collections'
    shutil.copytree(installed, copy.joinpath(*COLLECTION))
    actions = copy.joinpath(*COLLECTION, 'plugins', 'action')
    for name, text in (('win_edge_probe', PROBE), ('egress_firewall_info', INFO)):
        (actions / ('%s.py' % name)).rename(actions / ('_%s_real.py' % name))
        (actions / ('%s.py' % name)).write_text(text)
    return copy


def test_the_check_playbook_shows_drift_of_the_edge_and_of_the_origins_on_windows(tmp_path, dns):
    """The rule group allows one tunnel address of the plan's and an origin at 10.1.2.4, whose name now resolves to
    10.1.2.5: the report's drift for the Windows host counts both, and the host is drifted."""
    collections = collection_copy(tmp_path)
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(json.dumps({'all': {'hosts': {'winhost': {
        'ansible_connection': 'local', 'ansible_shell_type': 'powershell',
        'egress_firewall_default_deny': True, 'egress_firewall_cloudflared_config': 'none',
        'egress_firewall_origins': [{'host': 'app.corp', 'port': 8443}],
        'tunnelwall_edge_nameservers': [dns.address], 'tunnelwall_edge_dns_port': dns.port,
        'tunnelwall_edge_trusted_ranges': list(edge_zone.LAB_RANGES)}}}}))
    rules = [{'display_name': 'tunnelwall cloudflared: tunnel tcp/7844', 'addresses': ['198.51.100.11/32'],
              'description': 'Managed by tunnelwall.cloudflared'},
             {'display_name': 'tunnelwall cloudflared: origin tcp/8443', 'addresses': ['10.1.2.4/32'],
              'description': 'Managed by tunnelwall.cloudflared'}]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), PYTHONPATH=str(collections), ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOME=str(tmp_path / 'home'), TW_RULES=json.dumps(rules), ANSIBLE_SHOW_CUSTOM_STATS='1')
    report_dir = tmp_path / 'report'
    result = subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'tunnelwall.cloudflared.check', '-i', str(inventory),
                             '-e', 'tunnelwall_targets=winhost', '-e', 'tunnelwall_report_dir=%s' % report_dir],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    report = json.loads((report_dir / 'tunnelwall-fleet-report.json').read_text())
    row = report['rows'][0]
    drift = row['drift']
    # The stand-in probe answers no QUIC and no DNS: degraded, which outranks drifted; the drift is there all the same.
    assert row['host'] == 'winhost' and row['state'] in ('drifted', 'degraded'), row
    assert drift['purposes'] == ['tunnel', 'origin'], drift
    assert drift['new'] >= 2 and drift['gone'] == 1, drift  # the plan's other tunnel blocks and 10.1.2.5; 10.1.2.4 gone
    assert any('drift: the firewall allows %s' % drift['text'] in problem for problem in row['problems']), row
    stats = output[output.index('CUSTOM STATS'):]
    assert drift['text'] in stats or drift['text'].replace('\u2212', '\\u2212') in stats, stats
