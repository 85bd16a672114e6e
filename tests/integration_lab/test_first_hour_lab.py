# -*- coding: utf-8 -*-
"""Drift before outage, in the lab: the check playbook compares each host's applied allow-list with a fresh plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration_lab.test_site_playbooks_lab import playbook, rows

# One host per Linux backend: each reads its allow-list back its own way.
HOSTS = ('fw1', 'ufw1', 'nft1')


@pytest.fixture
def fleet(lab_pristine):
    yield lab_pristine


def test_the_check_playbook_shows_drift_after_the_edge_moves(fleet, tmp_path):
    lab = fleet
    targets = ':'.join(HOSTS)
    rc, output, dummy, report = playbook(lab, tmp_path / 'site', 'site', targets=targets)
    assert rc == 0, output
    assert all(row['firewall'] == {'state': 'ok', 'text': 'changed'} for row in report['rows']), report['rows']

    rc, output, dummy, report = playbook(lab, tmp_path / 'before', 'check', targets=targets)
    assert rc == 0, output
    by_host = rows(report)
    for host in HOSTS:
        assert by_host[host]['state'] == 'ok', (host, by_host[host])
        assert by_host[host]['drift'] == {'new': 0, 'gone': 0, 'purposes': [], 'text': '+0/\u22120'}, by_host[host]

    # The edge moves: every name now resolves to new addresses (the edge serves both). A fresh ANSIBLE_HOME, so the
    # plan is resolved again, not read from the cache.
    lab.fault('dns', 'rotate')
    rc, output, dummy, report = playbook(lab, tmp_path / 'after', 'check', targets=targets)
    assert rc == 0, output
    by_host = rows(report)
    for host in HOSTS:
        drift = by_host[host]['drift']
        assert by_host[host]['state'] == 'drifted', (host, by_host[host])
        assert drift['new'] > 0 and drift['gone'] > 0 and drift['purposes'] == ['tunnel', 'api', 'update'], (host, drift)
        assert drift['text'] == '+%d/\u2212%d' % (drift['new'], drift['gone'])
    assert report['totals']['drifted'] == len(HOSTS)
    stats = output[output.index('CUSTOM STATS'):]
    assert '"drifted": 3' in stats

    # egress_firewall_info compares on the host itself when given the plan: the same figures as the report.
    playbook_file = tmp_path / 'drift.yml'
    playbook_file.write_text('''
- hosts: %s
  gather_facts: false
  tasks:
    - tunnelwall.cloudflared.egress_firewall_info:
        plan: "{{ lookup('tunnelwall.cloudflared.edge_endpoints') }}"
      register: now
    - ansible.builtin.copy:
        content: "{{ now.drift | to_json }}"
        dest: "%s/{{ inventory_hostname }}.drift.json"
      delegate_to: localhost
''' % (targets, tmp_path))
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_HOME=str(tmp_path / 'home-info'))
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), str(playbook_file),
                             '-i', lab.inventory], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for host in HOSTS:
        assert json.loads((tmp_path / ('%s.drift.json' % host)).read_text()) == by_host[host]['drift'], host
