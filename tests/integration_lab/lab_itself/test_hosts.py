# -*- coding: utf-8 -*-
"""The managed hosts: reachable by Ansible, their firewall running, their namespaces private."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.lab import config
from tests.lab.system import run
from tests.support import edge_zone

# Tests marked `once` check the lab itself, whatever ansible-core drives it: `make test` runs them in the latest
# venv only (see the Makefile). Reaching the hosts with Ansible is checked with each ansible-core.


def _ansible(lab, tmp_path, *args):
    """Run the ad-hoc `ansible` of this venv against the lab; return {host: result} from the tree callback."""
    tree = tmp_path / 'tree'
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / 'ansible-home'), ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-tmp'),
               ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_CALLBACKS_ENABLED='ansible.builtin.tree',
               ANSIBLE_CALLBACK_TREE_DIR=str(tree))
    env.pop('ANSIBLE_CONFIG', None)
    ansible = os.path.join(os.path.dirname(sys.executable), 'ansible')
    result = subprocess.run([ansible, '-i', lab.inventory, 'lab'] + list(args), capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = {}
    for name in os.listdir(tree):
        with open(tree / name, encoding='utf-8') as handle:
            results[name] = json.load(handle)
    return results


@pytest.mark.once
def test_inventory_groups_hosts_by_backend_with_the_lab_variables(lab):
    with open(lab.inventory, encoding='utf-8') as handle:
        inventory = yaml.safe_load(handle)
    group = inventory['all']['children']['lab']
    for backend in config.BACKENDS:
        hosts = (group['children'][backend] or {}).get('hosts') or {}
        assert sorted(hosts) == lab.hosts_with(backend)
        for name, host in hosts.items():
            assert host['ansible_host'] == lab.hosts[name]['ipv4']
    variables = group['vars']
    assert variables['ansible_user'] == 'root' and os.path.exists(variables['ansible_ssh_private_key_file'])
    assert variables['ansible_python_interpreter'] == '/usr/bin/python3'
    assert 'StrictHostKeyChecking=no' in variables['ansible_ssh_common_args']
    assert 'UserKnownHostsFile=/dev/null' in variables['ansible_ssh_common_args']
    assert variables['tunnelwall_edge_nameservers'] == [lab.nameservers[0]]
    assert variables['tunnelwall_edge_trusted_ranges'] == ['198.51.100.0/24', '2001:db8::/32']
    assert variables['tunnelwall_lab_ca'] == lab.ca and os.path.exists(lab.ca)
    assert variables['tunnelwall_lab_decoy'] == edge_zone.DECOY


def test_ansible_ping_reaches_every_host(lab, tmp_path):
    results = _ansible(lab, tmp_path, '-m', 'ansible.builtin.ping')
    assert sorted(results) == sorted(lab.hosts)
    for name, result in results.items():
        assert result.get('ping') == 'pong' and not result.get('failed') and not result.get('unreachable'), (name, result)
    # Ansible's remote temp files stayed in the lab, not in the machine's /root.
    assert all(os.path.isdir(os.path.join(lab.hosts[n]['dir'], 'ansible-tmp')) for n in lab.hosts)


def test_ansible_facts_see_the_hosts_own_network(lab, tmp_path):
    results = _ansible(lab, tmp_path, '-m', 'ansible.builtin.setup', '-a', 'gather_subset=!all,network')
    for name, host in lab.hosts.items():
        facts = results[name]['ansible_facts']
        assert facts['ansible_default_ipv4']['address'] == host['ipv4']
        assert facts['ansible_default_ipv4']['gateway'] == '203.0.113.129'
        assert facts['ansible_default_ipv6']['address'] == host['ipv6']


@pytest.mark.once
def test_firewalld_runs_on_firewalld_hosts(lab):
    assert lab.hosts_with('firewalld')
    for name in lab.hosts_with('firewalld'):
        assert lab.exec(name, ['firewall-cmd', '--state']).stdout.strip() == 'running'
        assert lab.exec(name, ['firewall-cmd', '--get-default-zone']).stdout.strip() == 'public'
        assert 'table inet firewalld' in lab.exec(name, ['nft', 'list', 'tables']).stdout
    for name in lab.hosts_with('ufw') + lab.hosts_with('nftables') + lab.hosts_with('none'):
        assert lab.exec(name, ['firewall-cmd', '--state']).stdout.strip() != 'running'


@pytest.mark.once
def test_ufw_is_active_with_its_default_policies(lab):
    assert lab.hosts_with('ufw')
    for name in lab.hosts_with('ufw'):
        status = lab.exec(name, ['ufw', 'status', 'verbose'], check=True).stdout
        assert 'Status: active' in status
        assert 'Default: deny (incoming), allow (outgoing), disabled (routed)' in status
    for name in lab.hosts_with('firewalld') + lab.hosts_with('none'):
        assert 'Status: inactive' in lab.exec(name, ['ufw', 'status'], check=True).stdout


@pytest.mark.once
def test_none_hosts_have_no_firewall(lab):
    assert lab.hosts_with('none')
    for name in lab.hosts_with('none'):
        assert lab.exec(name, ['nft', 'list', 'ruleset'], check=True).stdout.strip() == ''


@pytest.mark.once
def test_nftables_hosts_have_nft_and_neither_ufw_nor_firewalld(lab):
    assert lab.hosts_with('nftables')
    programs = config.HIDDEN_PROGRAMS['nftables']
    which = 'import shutil, sys; print([shutil.which(p) for p in sys.argv[1:]])'
    # Positive control: the machine (and so every other host) has them, or hiding them would prove nothing.
    control = lab.exec(lab.hosts_with('none')[0], ['python3', '-c', which] + list(programs), check=True).stdout
    assert 'None' not in control, control
    for name in lab.hosts_with('nftables'):
        assert lab.exec(name, ['python3', '-c', which] + list(programs), check=True).stdout.strip() == str([None] * len(programs))
        for program in programs:
            assert lab.exec(name, [program, '--version']).returncode != 0, (name, program)
        assert lab.exec(name, ['test', '-e', '/etc/ufw/ufw.conf']).returncode == 1, name
        assert lab.exec(name, ['nft', 'list', 'ruleset'], check=True).stdout.strip() == ''
        assert lab.exec(name, ['nft', '--version'], check=True).stdout.startswith('nftables v')


@pytest.mark.once
def test_an_nftables_hosts_ruleset_is_its_own(lab_pristine):
    lab = lab_pristine
    name = lab.hosts_with('nftables')[0]
    machine = run(['nft', 'list', 'ruleset']).stdout
    lab.exec(name, ['nft', '-f', '-'], check=True,
             stdin='table inet twtest {\n chain output {\n type filter hook output priority 0; policy accept;\n'
                   ' ip daddr 198.51.100.11 tcp dport 7844 reject with tcp reset\n }\n}\n')
    assert 'table inet twtest' in lab.exec(name, ['nft', 'list', 'tables'], check=True).stdout
    result = lab.probe(name, 'connect', '198.51.100.11', 7844)
    assert not result['ok'] and result['error'] == 'refused', result
    assert lab.probe(name, 'connect', '198.51.100.12', 7844)['ok']
    others = [n for n in lab.hosts if n != name]
    assert all('twtest' not in lab.exec(n, ['nft', 'list', 'tables']).stdout for n in others)
    assert lab.probe(others[0], 'connect', '198.51.100.11', 7844)['ok']
    assert run(['nft', 'list', 'ruleset']).stdout == machine
    lab.reset_firewalls([name])
    assert lab.exec(name, ['nft', 'list', 'ruleset'], check=True).stdout.strip() == ''
    assert lab.probe(name, 'connect', '198.51.100.11', 7844)['ok']


@pytest.mark.once
def test_hosts_have_private_mounts_resolver_and_routes(lab):
    for name, host in lab.hosts.items():
        mounts = {line.split()[4] for line in lab.exec(name, ['cat', '/proc/self/mountinfo'], check=True).stdout.splitlines()}
        for path in ('/etc', '/run', '/etc/resolv.conf', '/etc/ufw', '/etc/default/ufw', '/etc/firewalld'):
            assert path in mounts, (name, path)
        assert lab.exec(name, ['hostname']).stdout.strip() == name
        resolv = lab.exec(name, ['cat', '/etc/resolv.conf']).stdout
        assert 'nameserver 198.51.100.253' in resolv and 'nameserver 2001:db8:e::253' in resolv
        assert lab.exec(name, ['ip', 'route', 'show', 'default']).stdout.split()[:3] == ['default', 'via', '203.0.113.129']
        assert lab.exec(name, ['ip', '-6', 'route', 'show', 'default']).stdout.split()[:3] == ['default', 'via', '2001:db8:ffff:1::1']
        addresses = lab.exec(name, ['ip', '-br', 'addr', 'show', 'eth0']).stdout
        assert host['ipv4'] in addresses and host['ipv6'] in addresses
    # What the hosts see is theirs: the machine's own files are not the hosts' copies.
    with open('/etc/resolv.conf', encoding='utf-8') as handle:
        assert '198.51.100.253' not in handle.read()


@pytest.mark.once
def test_cli_exec_and_status(lab, lab_cli):
    name = sorted(lab.hosts)[0]
    result = lab_cli(lab.dir, 'exec', name, '--', 'hostname')
    assert result.returncode == 0 and result.stdout.strip() == name
    assert lab_cli(lab.dir, 'exec', name, '--', 'false').returncode == 1
    status = lab_cli(lab.dir, 'status', '--json')
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)['healthy'] is True
    assert lab_cli(lab.dir, 'exec', 'nosuchhost', '--', 'true').returncode == 2
