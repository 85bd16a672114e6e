# -*- coding: utf-8 -*-
"""edge_endpoints as users run it: ansible-playbook and ansible-doc in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.support import edge_zone

pytestmark = pytest.mark.playbook
BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ansible(tool, *args, env=None, cwd=None):
    environment = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', **(env or {}))
    return subprocess.run([os.path.join(BIN, tool), *args], capture_output=True, text=True, env=environment,
                          cwd=cwd, timeout=300, check=False)


def lab_vars(dns):
    return json.dumps({'tunnelwall_edge_nameservers': [dns.address], 'tunnelwall_edge_dns_port': dns.port,
                       'tunnelwall_edge_trusted_ranges': list(edge_zone.LAB_RANGES)})


@pytest.fixture
def home(tmp_path):
    """A private ANSIBLE_HOME, so the plan cache starts empty."""
    return {'ANSIBLE_HOME': str(tmp_path / 'ansible-home'), 'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'ansible-home/tmp')}


def test_lookup_gives_the_plan_and_query_a_list_of_one(dns, tmp_path, home):
    out = tmp_path / 'plan.json'
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.assert:
        that:
          - lookup('tunnelwall.cloudflared.edge_endpoints') is mapping
          - query('tunnelwall.cloudflared.edge_endpoints') | length == 1
          - query('tunnelwall.cloudflared.edge_endpoints')[0].version == 1
    - ansible.builtin.copy:
        content: "{{ lookup('tunnelwall.cloudflared.edge_endpoints', ip_version='4') | to_json }}"
        dest: %s
''' % out)
    result = ansible('ansible-playbook', str(playbook), '-e', lab_vars(dns), env=home)
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(out.read_text())
    assert plan['source'] == 'dns' and plan['rules'][0]['ipv6'] == []


def test_forked_workers_share_one_resolution(dns, tmp_path, home):
    inventory = tmp_path / 'hosts.ini'
    inventory.write_text('[fleet]\n%s\n\n[fleet:vars]\nansible_connection=local\nansible_python_interpreter=%s\n'
                         % ('\n'.join('host%d' % n for n in range(6)), sys.executable))
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: fleet
  gather_facts: false
  tasks:
    - ansible.builtin.set_fact:
        plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
    - ansible.builtin.assert:
        that: plan.endpoints | length == 4
''')
    dns.set(delay_ms=200)
    result = ansible('ansible-playbook', '-i', str(inventory), '-f', '6', str(playbook), '-e', lab_vars(dns), env=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'ok=2' in result.stdout and result.stdout.count('ok=2') == 6
    # One worker resolved (SRV + A/AAAA of four names); the five others read its plan.
    assert len(dns.queries()) == 9


def test_plan_playbook_prints_the_rules(dns, home):
    result = ansible('ansible-playbook', 'tunnelwall.cloudflared.plan', '-e', lab_vars(dns), env=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'resolved from DNS at' in result.stdout
    assert 'tunnel udp/7844 to 8 blocks: 198.51.100.11/32 198.51.100.12/31' in result.stdout


def test_plan_playbook_says_when_it_falls_back_to_the_catalog(dns, home):
    dns.set(faults={'*': 'servfail'})
    result = ansible('ansible-playbook', 'tunnelwall.cloudflared.plan', '-e', lab_vars(dns),
                     '-e', 'tunnelwall_edge_on_dns_failure=catalog', env=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DNS FAILED: Cloudflare's PUBLISHED LIST taken" in result.stdout
    assert 'SERVFAIL' in result.stderr + result.stdout
    assert '198.41.192.7/32' in result.stdout


def test_plan_playbook_fails_without_fallback(dns, home):
    dns.set(faults={'*': 'nxdomain'})
    result = ansible('ansible-playbook', 'tunnelwall.cloudflared.plan', '-e', lab_vars(dns), env=home)
    assert result.returncode != 0
    assert 'NXDOMAIN' in result.stdout + result.stderr


def test_ansible_doc_renders_options_examples_and_return():
    result = ansible('ansible-doc', '-t', 'lookup', 'tunnelwall.cloudflared.edge_endpoints')
    assert result.returncode == 0, result.stderr
    for text in ('_v2-origintunneld._tcp.argotunnel.com', 'trusted_ranges', 'on_dns_failure', 'EXAMPLES',
                 "lookup('tunnelwall.cloudflared.edge_endpoints'", 'RETURN VALUES', 'resolved_at'):
        assert text in result.stdout, text


@pytest.mark.parametrize('module, texts', [
    ('tunnelwall.cloudflared.edge_probe', ('QUIC', 'recommended_protocol', 'require', 'tunnelwall.cloudflared.edge_probe:')),
    ('tunnelwall.cloudflared.win_edge_probe', ('PowerShell 5.1', 'action plugin', 'tunnelwall.cloudflared.win_edge_probe:')),
])
def test_ansible_doc_renders_the_modules(module, texts):
    result = ansible('ansible-doc', module)
    assert result.returncode == 0, result.stderr
    for text in texts + ('EXAMPLES', 'RETURN VALUES', 'ca_path'):
        assert text in result.stdout, text


def test_ansible_doc_lists_every_module_of_the_collection():
    result = ansible('ansible-doc', '--list', 'tunnelwall.cloudflared', '--json')
    assert result.returncode == 0, result.stderr
    shipped = {os.path.splitext(name)[0] for name in os.listdir(os.path.join(REPO, 'plugins', 'modules'))}
    listed = {name.split('.')[-1] for name in json.loads(result.stdout)}
    assert listed == shipped, (listed, shipped)
    for module in sorted(shipped):
        page = ansible('ansible-doc', 'tunnelwall.cloudflared.' + module)
        assert page.returncode == 0 and 'EXAMPLES' in page.stdout and 'RETURN VALUES' in page.stdout, (module, page.stderr)


def test_ansible_doc_shows_the_roles_argument_specs():
    result = ansible('ansible-doc', '-t', 'role', 'tunnelwall.cloudflared.egress_firewall')
    assert result.returncode == 0, result.stderr
    with open(os.path.join(REPO, 'roles', 'egress_firewall', 'meta', 'argument_specs.yml'), encoding='utf-8') as handle:
        options = yaml.safe_load(handle)['argument_specs']['main']['options']
    assert len(options) >= 15
    for name in options:
        assert name in result.stdout, name


def test_check_resolves_the_plan_with_the_roles_lookup_options(dns, tmp_path, home):
    """egress_firewall_lookup_options reach the plan the site and check playbooks resolve ({region: us} is not the
    global edge). The probe itself goes nowhere useful here (no lab): only the plan in the report is looked at."""
    report = tmp_path / 'report'
    extra = {'egress_firewall_lookup_options': {'region': 'us'}, 'tunnelwall_report_dir': str(report),
             'egress_firewall_probe_timeout': 0.2, 'ansible_python_interpreter': sys.executable}
    result = ansible('ansible-playbook', 'tunnelwall.cloudflared.check', '-i', 'localhost,', '-c', 'local',
                     '-e', lab_vars(dns), '-e', json.dumps(extra), env=home, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    written = json.loads((report / 'tunnelwall-fleet-report.json').read_text())
    assert written['plan']['region'] == 'us', written['plan']
