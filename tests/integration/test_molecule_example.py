# -*- coding: utf-8 -*-
"""The molecule scenario users copy (examples/molecule/egress_firewall), checked as far as this machine allows.

No container engine and no registry here, so molecule cannot run it: its files parse, its playbooks pass
ansible-playbook's syntax check against the collection under test, every variable it gives the role is one the role
knows (tunnelwall.cloudflared.check_variables, as the role's first task runs it), and its plan file is a plan.
tests/integration_lab/test_molecule_example_lab.py runs its converge and verify on a lab host with nftables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.playbook
BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = os.path.join(REPO, 'examples', 'molecule', 'egress_firewall')
PLAYBOOKS = ('prepare.yml', 'converge.yml', 'verify.yml')


def load(name):
    with open(os.path.join(SCENARIO, name), encoding='utf-8') as stream:
        return yaml.safe_load(stream)


def ansible_playbook(*args, cwd=None):
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='False')
    result = subprocess.run([os.path.join(BIN, 'ansible-playbook'), *args], capture_output=True, text=True, env=env,
                            cwd=cwd, timeout=120, check=False)
    return result.returncode, result.stdout + result.stderr


def role_vars():
    """The variables converge.yml gives the role."""
    tasks = load('converge.yml')[0]['tasks']
    return next(t['vars'] for t in tasks if t.get('ansible.builtin.include_role', {}).get('name')
                == 'tunnelwall.cloudflared.egress_firewall')


def test_molecule_yml_asks_for_what_the_container_needs_and_runs_idempotence_and_verify():
    config = load('molecule.yml')
    assert config['driver']['name'] in ('podman', 'docker')
    (platform,) = config['platforms']
    assert platform['capabilities'] == ['NET_ADMIN'] and not platform.get('privileged')
    assert set(config['provisioner']['playbooks']) == {'prepare', 'converge', 'verify'}
    sequence = config['scenario']['test_sequence']
    assert sequence.index('converge') < sequence.index('idempotence') < sequence.index('verify')
    assert {c['name'] for c in load('requirements.yml')['collections']} >= {'tunnelwall.cloudflared'}


@pytest.mark.parametrize('playbook', PLAYBOOKS)
def test_the_playbooks_pass_the_syntax_check(playbook, tmp_path):
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(yaml.safe_dump({'all': {'hosts': {'egress-nftables': None}}}))
    rc, out = ansible_playbook('--syntax-check', '-i', str(inventory), os.path.join(SCENARIO, playbook))
    assert rc == 0, out


def test_the_role_knows_every_variable_the_scenario_sets_and_refuses_a_misspelt_one(tmp_path):
    given = dict(role_vars())
    assert given['egress_firewall_verify'] is False and given['egress_firewall_default_deny'] is True
    given['egress_firewall_plan'] = {}  # its value is a lookup of the scenario's own file; only names are checked
    for name, extra, expected_rc in (('known', {}, 0), ('misspelt', {'egress_firewall_default_denny': True}, 2)):
        playbook = tmp_path / ('%s.yml' % name)
        playbook.write_text(yaml.safe_dump([{'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
                                             'vars': dict(given, **extra),
                                             'tasks': [{'tunnelwall.cloudflared.check_variables': {}}]}]))
        rc, out = ansible_playbook(str(playbook))
        assert rc == expected_rc, out
    assert 'egress_firewall_default_denny' in out and 'egress_firewall_default_deny' in out


def test_the_plan_file_is_a_plan_of_both_tunnel_protocols():
    with open(os.path.join(SCENARIO, 'files', 'plan.json'), encoding='utf-8') as stream:
        plan = json.load(stream)
    assert plan['version'] == 1 and plan['region'] == 'global'
    assert {(r['purpose'], r['protocol'], r['port']) for r in plan['rules']} >= {('tunnel', 'tcp', 7844),
                                                                                 ('tunnel', 'udp', 7844)}
    assert all(r['ipv4'] and r['ipv6'] for r in plan['rules'])
