# -*- coding: utf-8 -*-
"""The first hour on a real fleet, with ansible-playbook as users run it: typos, regions, a fleet that is down.

No lab: the hosts here are either never connected to (the variable check and the plans happen on the controller) or
unreachable on purpose (SSH to a closed port on 127.0.0.1), so no packet leaves the machine and no firewall changes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from tests.support import edge_zone
from tests.support.ansible_output import play_recap

pytestmark = pytest.mark.playbook
BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ansible_playbook(*args, env=None, cwd=None):
    environment = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_SHOW_CUSTOM_STATS='1',
                       **(env or {}))
    result = subprocess.run([os.path.join(BIN, 'ansible-playbook'), *args], capture_output=True, text=True,
                            env=environment, cwd=cwd, timeout=300, check=False)
    return result.returncode, result.stdout + result.stderr, result.stdout


def lab_vars(dns):
    return json.dumps({'tunnelwall_edge_nameservers': [dns.address], 'tunnelwall_edge_dns_port': dns.port,
                       'tunnelwall_edge_trusted_ranges': list(edge_zone.LAB_RANGES)})


@pytest.fixture
def home(tmp_path):
    """A private ANSIBLE_HOME, so the plan cache starts empty."""
    return {'ANSIBLE_HOME': str(tmp_path / 'ansible-home'), 'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'ansible-home/tmp')}


@pytest.fixture
def closed_port():
    """A TCP port on 127.0.0.1 where nothing listens: SSH there is refused at once (an unreachable host)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def inventory(tmp_path, hosts, **common):
    """A YAML inventory: ``hosts`` is ``{name: {vars}}``; ``common`` vars apply to all."""
    path = tmp_path / 'inventory.yml'
    path.write_text(yaml.safe_dump({'all': {'hosts': hosts, 'vars': common}}))
    return str(path)


def dead_fleet(tmp_path, port, names=('dead1', 'dead2'), **more):
    hosts = dict((name, {'ansible_host': '127.0.0.1', 'ansible_port': port}) for name in names)
    return inventory(tmp_path, hosts, ansible_connection='ssh', ansible_user='nobody',
                     ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null '
                                             '-o ConnectTimeout=2 -o BatchMode=yes', **more)


# ------------------------------------------------------------------------------------------------------------------
# Typos
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('playbook', ['site', 'check'])
def test_a_misspelt_variable_fails_the_run_naming_the_closest_known_one(playbook, tmp_path, closed_port, home):
    # The hosts cannot be reached: were the typo not caught first, the run would fail on the connection instead.
    rc, output, stdout = ansible_playbook('tunnelwall.cloudflared.' + playbook, '-i', dead_fleet(tmp_path, closed_port),
                                          '-e', 'egress_firewall_default_denny=true', '-e', 'tunnelwall_targets=all',
                                          env=home, cwd=str(tmp_path))
    assert rc != 0
    assert 'Unknown variable egress_firewall_default_denny (did you mean egress_firewall_default_deny?)' in output, output
    assert 'Nothing was changed' in output
    recap = play_recap(stdout)
    assert all(recap[h]['unreachable'] == 0 and recap[h]['failed'] == 1 for h in ('dead1', 'dead2')), recap
    assert 'Write the fleet report' not in stdout  # nothing ran: a typo is not a state of the fleet


def test_a_misspelt_playbook_variable_is_caught_too(tmp_path, closed_port, home):
    rc, output, dummy = ansible_playbook('tunnelwall.cloudflared.check', '-i', dead_fleet(tmp_path, closed_port),
                                         '-e', 'tunnelwall_report_dri=/tmp/x', '-e', 'tunnelwall_targets=all',
                                         env=home, cwd=str(tmp_path))
    assert rc != 0 and 'unknown variable tunnelwall_report_dri (did you mean tunnelwall_report_dir?)' in output.lower()


def test_the_role_refuses_a_typo_before_it_resolves_or_connects(dns, tmp_path, closed_port, home):
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: all
  gather_facts: false
  roles:
    - role: tunnelwall.cloudflared.egress_firewall
''')
    # In the inventory (group_vars, host_vars): the role's argument specs only see role parameters.
    fleet = dead_fleet(tmp_path, closed_port, egress_firewall_confim_timeout=60)
    rc, output, stdout = ansible_playbook(str(playbook), '-i', fleet, '-e', lab_vars(dns), env=home)
    assert rc != 0
    assert 'egress_firewall_confim_timeout (did you mean egress_firewall_confirm_timeout?)' in output, output
    assert dns.queries() == []  # refused before the plan was resolved
    assert all(v['unreachable'] == 0 for v in play_recap(stdout).values())  # and before any connection


def test_a_misspelt_lookup_option_fails_naming_the_option(dns, tmp_path, home):
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: "{{ lookup('tunnelwall.cloudflared.edge_endpoints', regoin='us') }}"
''')
    rc, output, dummy = ansible_playbook(str(playbook), '-e', lab_vars(dns), env=home)
    assert rc != 0 and 'unknown option regoin (did you mean region?)' in output, output
    assert dns.queries() == []


def test_a_misspelt_option_in_egress_firewall_lookup_options_fails_per_host(dns, tmp_path, closed_port, home):
    rc, output, dummy = ansible_playbook('tunnelwall.cloudflared.check', '-i', dead_fleet(tmp_path, closed_port),
                                         '-e', lab_vars(dns), '-e', '{"egress_firewall_lookup_options": {"regoin": "us"}}',
                                         '-e', 'tunnelwall_targets=all', env=home, cwd=str(tmp_path))
    assert rc != 0
    assert ('egress_firewall_lookup_options: unknown option of the edge_endpoints lookup regoin (did you mean region?)'
            in output), output
    assert dns.queries() == []


def test_every_variable_the_playbooks_and_the_role_read_is_known():
    """The check's list is complete: a name the collection itself uses must never be called a typo."""
    import re
    from ansible_collections.tunnelwall.cloudflared.plugins.lookup import edge_endpoints
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import known_variables
    known = known_variables.role_variables() | set(known_variables.lookup_variables(edge_endpoints.DOCUMENTATION)) \
        | set(known_variables.PLAYBOOK_VARIABLES)
    used = set()
    for folder in ('playbooks', 'roles/egress_firewall/tasks', 'roles/egress_firewall/vars',
                   'roles/egress_firewall/defaults', 'extensions/molecule'):
        for name in os.listdir(os.path.join(REPO, folder)):
            path = os.path.join(REPO, folder, name)
            if os.path.isfile(path):
                with open(path, encoding='utf-8') as handle:
                    used |= set(re.findall(r'(?<![\w.])((?:egress_firewall|tunnelwall)_\w+)(?![\w*])', handle.read()))
    with open(os.path.join(REPO, 'docs', 'awx-survey.json'), encoding='utf-8') as handle:
        used |= {q['variable'] for q in json.load(handle)['spec']}
    lab = {name for name in used if name.startswith('tunnelwall_lab_')}  # the lab's, accepted through its inventory
    modules = {os.path.splitext(name)[0] for name in os.listdir(os.path.join(REPO, 'plugins', 'modules'))}
    assert sorted(used - known - lab - modules) == []


# ------------------------------------------------------------------------------------------------------------------
# One plan per region
# ------------------------------------------------------------------------------------------------------------------
def test_hosts_of_one_play_with_different_regions_get_their_own_plans_resolved_once_each(dns, tmp_path, home):
    """Four hosts, three regions (one by egress_firewall_lookup_options, one by tunnelwall_edge_region): each gets its
    own region's plan, and each region is resolved once."""
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: tunnelwall.cloudflared.egress_firewall
        tasks_from: plan
        public: true
    - ansible.builtin.copy:
        content: "{{ {'region': __egress_firewall_plan.region,
                      'tunnel': __egress_firewall_plan.endpoints | selectattr('purpose', 'eq', 'tunnel')
                                | map(attribute='hostname') | list} | to_json }}"
        dest: "%s/{{ inventory_hostname }}.json"
      delegate_to: localhost
''' % tmp_path)
    hosts = {'fed1': {'egress_firewall_lookup_options': {'region': 'fed'}}, 'fed2': {'egress_firewall_lookup_options': {'region': 'fed'}},
             'us1': {'tunnelwall_edge_region': 'us'}, 'global1': {}}
    path = inventory(tmp_path, hosts, ansible_connection='local', ansible_python_interpreter=sys.executable)
    rc, output, dummy = ansible_playbook(str(playbook), '-i', path, '-e', lab_vars(dns), env=home)
    assert rc == 0, output
    plans = dict((host, json.loads((tmp_path / ('%s.json' % host)).read_text())) for host in hosts)
    assert plans['fed1']['region'] == plans['fed2']['region'] == 'fed'
    assert plans['fed1']['tunnel'] == ['fed-region1.v2.argotunnel.com', 'fed-region2.v2.argotunnel.com']
    assert plans['us1']['region'] == 'us' and plans['global1']['region'] == 'global'
    srv = [q for q in dns.queries() if q['type'] == 'SRV']
    assert sorted(q['name'].rstrip('.') for q in srv) == sorted(
        [edge_zone.SRV_NAMES['fed'], edge_zone.SRV_NAMES['us'], edge_zone.SRV_NAMES['global']]), srv


def test_check_reports_each_host_with_its_own_regions_plan(dns, tmp_path, closed_port, home):
    rc, output, dummy = ansible_playbook(
        'tunnelwall.cloudflared.check', '-i', dead_fleet(tmp_path, closed_port, names=('fed1', 'global1')),
        '-e', lab_vars(dns), '-e', 'tunnelwall_targets=all', '-e', 'tunnelwall_report_dir=%s' % (tmp_path / 'report'),
        '-e', '{"egress_firewall_lookup_options": "{{ {\'region\': \'fed\'} if inventory_hostname == \'fed1\' else {} }}"}',
        env=home, cwd=str(tmp_path))
    report = json.loads((tmp_path / 'report' / 'tunnelwall-fleet-report.json').read_text())
    assert {row['host']: row['plan']['region'] for row in report['rows']} == {'fed1': 'fed', 'global1': 'global'}, output


# ------------------------------------------------------------------------------------------------------------------
# The report always comes
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('playbook, args', [('check', ()), ('site', ()), ('site', ('--check',))])
def test_an_unreachable_fleet_still_gets_its_report_and_artifacts(playbook, args, dns, tmp_path, closed_port, home):
    report_dir = tmp_path / 'report'
    rc, output, stdout = ansible_playbook('tunnelwall.cloudflared.' + playbook, *args,
                                          '-i', dead_fleet(tmp_path, closed_port), '-e', lab_vars(dns),
                                          '-e', 'tunnelwall_targets=all', '-e', 'tunnelwall_report_dir=%s' % report_dir,
                                          env=home, cwd=str(tmp_path))
    assert rc != 0, output  # the hosts fail after the report: the run's result says it too
    stats = stdout[stdout.index('CUSTOM STATS'):]  # set_stats: what AWX keeps as the job's artifacts
    assert 'tunnelwall_fleet' in stats and '"unreachable": 2' in stats and '"dead1"' in stats and '"dead2"' in stats
    recap = play_recap(stdout)
    assert all(recap[h]['failed'] == 1 and recap[h]['unreachable'] == 0 for h in ('dead1', 'dead2')), recap
    if '--check' in args:
        assert not report_dir.exists()  # a check run writes no file
        return
    report = json.loads((report_dir / 'tunnelwall-fleet-report.json').read_text())
    rows = {row['host']: row for row in report['rows']}
    assert sorted(rows) == ['dead1', 'dead2']
    assert all(row['state'] == 'unreachable' and 'Connection refused' in row['message'] for row in rows.values()), rows
    assert report['totals']['unreachable'] == 2
    markdown = (report_dir / 'tunnelwall-fleet-report.md').read_text()
    assert 'dead1' in markdown and 'dead2' in markdown


def test_set_stats_is_set_when_no_host_matches(dns, tmp_path, home):
    rc, output, stdout = ansible_playbook('tunnelwall.cloudflared.check', '-i', 'nohost,', '-e', lab_vars(dns),
                                          '-e', 'tunnelwall_targets=nomatch', env=home, cwd=str(tmp_path))
    assert 'tunnelwall_fleet' in stdout and 'no host matches tunnelwall_targets=nomatch' in stdout, output


@pytest.mark.parametrize('playbook', ['check', 'remove'])
def test_a_run_without_tunnelwall_targets_warns_that_it_runs_on_every_host(playbook, dns, tmp_path, closed_port, home):
    rc, output, dummy = ansible_playbook('tunnelwall.cloudflared.' + playbook, '-i', dead_fleet(tmp_path, closed_port),
                                         '-e', lab_vars(dns), '-e', 'tunnelwall_report_dir=%s' % (tmp_path / 'r'),
                                         env=home, cwd=str(tmp_path))
    assert 'tunnelwall_targets is not set' in output and output.count('tunnelwall_targets is not set') == 1, output


# ------------------------------------------------------------------------------------------------------------------
# The plan playbook
# ------------------------------------------------------------------------------------------------------------------
def test_plan_playbook_honours_egress_firewall_lookup_options_and_writes_the_plan(dns, tmp_path, home):
    out = tmp_path / 'plan.json'
    rc, output, dummy = ansible_playbook('tunnelwall.cloudflared.plan', '-e', lab_vars(dns),
                                         '-e', '{"egress_firewall_lookup_options": {"region": "fed", "ip_version": "4"}}',
                                         '-e', 'tunnelwall_plan_file=%s' % out, env=home, cwd=str(tmp_path))
    assert rc == 0, output
    assert 'fed edge, generation v2, resolved from DNS' in output
    plan = json.loads(out.read_text())
    assert plan['region'] == 'fed' and plan['source'] == 'dns'
    assert all(rule['ipv6'] == [] for rule in plan['rules'])
    assert {e['hostname'] for e in plan['endpoints'] if e['purpose'] == 'tunnel'} == set(edge_zone.REGION_HOSTS['fed'])


def test_plan_playbook_gives_one_plan_per_region_of_the_inventory(dns, tmp_path, home):
    hosts = {'fed1': {'tunnelwall_edge_region': 'fed'}, 'us1': {'egress_firewall_lookup_options': {'region': 'us'}},
             'us2': {'egress_firewall_lookup_options': {'region': 'us'}}}
    path = inventory(tmp_path, hosts)
    rc, output, dummy = ansible_playbook('tunnelwall.cloudflared.plan', '-i', path, '-e', 'tunnelwall_targets=all',
                                         '-e', lab_vars(dns), env=home, cwd=str(tmp_path))
    assert rc == 0, output
    assert 'fed edge' in output and 'for fed1' in output and 'us edge' in output and 'for us1, us2' in output, output
    assert len([q for q in dns.queries() if q['type'] == 'SRV']) == 2
    rc, output, dummy = ansible_playbook('tunnelwall.cloudflared.plan', '-i', path, '-e', 'tunnelwall_targets=all',
                                         '-e', 'tunnelwall_plan_file=%s' % (tmp_path / 'p.json'), '-e', lab_vars(dns),
                                         env=home, cwd=str(tmp_path))
    assert rc != 0 and '2 different plans (fed, us)' in output and not (tmp_path / 'p.json').exists(), output


def test_plan_playbook_suggests_the_catalog_when_dns_fails(dns, tmp_path, home):
    dns.set(faults={'*': 'servfail'})
    rc, output, dummy = ansible_playbook('tunnelwall.cloudflared.plan', '-e', lab_vars(dns), env=home, cwd=str(tmp_path))
    assert rc != 0
    assert 'SERVFAIL' in output and 'tunnelwall_edge_on_dns_failure=catalog' in output, output


# ------------------------------------------------------------------------------------------------------------------
# One message per case
# ------------------------------------------------------------------------------------------------------------------
UFW = 'tunnelwall.cloudflared.ufw_egress'


@pytest.mark.parametrize('failed, says', [
    # A failure the module reported itself names it in `module`; without rolled_back it came before any change.
    ({'msg': 'ufw is installed but inactive', 'module': UFW},
     'egress_firewall on localhost (ufw): ufw is installed but inactive Nothing to roll back: the firewall is as before'),
    # ansible-core 2.19+ records the exception being handled when fail_json is called in an except block.
    ({'msg': 'ufw is installed but inactive', 'module': UFW, 'exception': 'Traceback ... EgressError'},
     'Nothing to roll back: the firewall is as before this run.'),
    ({'msg': 'Task failed: Module failed: [Errno 13] Permission denied', 'exception': 'Traceback ...'},
     'check the firewall; a change it had begun'),
    ({'msg': 'MODULE FAILURE\nSee stdout/stderr for the exact error', 'module_stderr': 'Traceback ...'},
     'check the firewall; a change it had begun is undone by the dead-man revert within egress_firewall_confirm_timeout'),
    # The same words without `module`: not the module's own report (AnsibleModule's argument checks, or a crash whose
    # text happens to read like one) - the message does not claim the firewall is as before.
    ({'msg': 'ufw is installed but inactive'}, 'ufw is installed but inactive The module stopped before it could say'),
    ({'msg': 'Unsupported parameters for (%s) module: bogus. Supported parameters include: name' % UFW},
     'check the firewall; a change it had begun'),
    # The module named, but a lost connection: not known either.
    ({'msg': 'connection lost: winrm', 'module': UFW, 'unreachable': True}, 'check the firewall; a change it had begun'),
    ({'msg': 'verification failed', 'rolled_back': True, 'module': UFW}, 'verification failed"'),
])
def test_a_failure_claims_the_firewall_is_as_before_only_when_it_is_known(failed, says, tmp_path, home):
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: tunnelwall.cloudflared.egress_firewall
        tasks_from: failed
      vars:
        egress_firewall_backend: ufw
        ansible_failed_result: %s
''' % json.dumps(failed))
    rc, output, dummy = ansible_playbook(str(playbook), env=home)
    assert rc != 0 and says in output, output
    if 'as before' not in says:
        assert 'as before' not in output


def test_the_lookup_takes_the_roles_purposes_extra_included(dns, tmp_path, home):
    """egress_firewall_purposes' default (tunnel, api, update, extra) is a valid lookup purposes list too."""
    out = tmp_path / 'plan.json'
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        content: "{{ lookup('tunnelwall.cloudflared.edge_endpoints', purposes=['tunnel', 'extra']) | to_json }}"
        dest: %s
''' % out)
    rc, output, dummy = ansible_playbook(str(playbook), '-e', lab_vars(dns), env=home)
    assert rc == 0, output
    assert {rule['purpose'] for rule in json.loads(out.read_text())['rules']} == {'tunnel'}


def test_the_lookup_takes_the_probes_ip_version_auto_as_both(dns, tmp_path, home):
    """ip_version: one set of names (auto, 4, 6, both) for the lookup and the probe; auto resolves both families."""
    out = tmp_path / 'plans.json'
    playbook = tmp_path / 'play.yml'
    playbook.write_text('''
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        content: "{{ [lookup('tunnelwall.cloudflared.edge_endpoints', ip_version='auto'),
                      lookup('tunnelwall.cloudflared.edge_endpoints', ip_version='both')] | to_json }}"
        dest: %s
''' % out)
    rc, output, dummy = ansible_playbook(str(playbook), '-e', lab_vars(dns), env=home)
    assert rc == 0, output
    auto, both = json.loads(out.read_text())
    assert auto['rules'] == both['rules'] and auto['rules'][0]['ipv4'] and auto['rules'][0]['ipv6']
