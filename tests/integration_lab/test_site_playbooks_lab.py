# -*- coding: utf-8 -*-
"""The shipped playbooks (site, check, remove) run with ansible-playbook against the lab, as users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.lab import config
from tests.support.ansible_output import play_recap

BIN = os.path.dirname(sys.executable)
# Two firewalld, two ufw and the nftables host: every Linux backend in one run.
FLEET = ('fw1', 'fw2', 'ufw1', 'ufw2', 'nft1')
LAB_VARS = ['-e', '{"egress_firewall_probe_ca_path": "{{ tunnelwall_lab_ca }}", "egress_firewall_probe_timeout": 1.5}']


@pytest.fixture
def fleet(lab_pristine):
    yield lab_pristine


def playbook(lab, tmp_path, name, *args, targets=':'.join(FLEET)):
    """Run tunnelwall.cloudflared.NAME; return (rc, output, recap, report JSON or None)."""
    report_dir = tmp_path / 'report'
    # A private ANSIBLE_HOME: the lookup's plan cache starts empty, so every run resolves (and is counted).
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_SHOW_CUSTOM_STATS='1', ANSIBLE_HOME=str(tmp_path / 'home'))
    command = [os.path.join(BIN, 'ansible-playbook'), 'tunnelwall.cloudflared.' + name, '-i', lab.inventory,
               '-e', 'tunnelwall_targets=' + targets, '-e', 'tunnelwall_report_dir=%s' % report_dir] + LAB_VARS + list(args)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False, cwd=config.REPO)
    output = result.stdout + result.stderr
    recap = play_recap(result.stdout)
    report = report_dir / 'tunnelwall-fleet-report.json'
    return result.returncode, output, recap, json.loads(report.read_text()) if report.exists() else None


def rulesets(lab):
    return {host: sorted(lab.nft_ruleset(host).splitlines()) for host in FLEET}


def rows(report):
    return {row['host']: row for row in report['rows']}


def test_check_site_and_remove_on_a_fleet_with_quic_blocked_on_one_host(fleet, tmp_path):
    lab = fleet
    before = rulesets(lab)
    lab.fault('udp7844', 'drop', 'ufw1')

    rc, output, recap, report = playbook(lab, tmp_path, 'check')
    assert rc == 0, output
    assert all(recap[h]['changed'] == 0 for h in FLEET), recap
    assert rulesets(lab) == before
    by_host = rows(report)
    assert sorted(by_host) == sorted(FLEET)
    assert by_host['ufw1']['state'] == 'degraded' and by_host['ufw1']['protocol'] == 'http2'  # cloudflared runs there
    assert all(by_host[h]['state'] == 'ok' and by_host[h]['protocol'] == 'quic' for h in ('fw1', 'fw2', 'ufw2', 'nft1'))
    assert 'tunnelwall_fleet' in output  # set_stats, shown as custom stats (AWX keeps them as artifacts)

    rc, output, recap, dummy = playbook(lab, tmp_path, 'site', '-e', 'egress_firewall_default_deny=true', '--check', '--diff')
    assert rc == 0, output
    assert recap['fw1']['changed'] > 0 and recap['ufw1']['changed'] > 0 and recap['nft1']['changed'] > 0
    assert '+default outgoing policy: reject' in output and '+table inet tunnelwall {' in output
    assert rulesets(lab) == before

    rc, output, recap, report = playbook(lab, tmp_path, 'site', '-e', 'egress_firewall_default_deny=true')
    assert rc == 0, output  # QUIC blocked on ufw1: HTTP/2 still reaches the edge, so any_tunnel is met
    applied = rulesets(lab)
    assert all(applied[h] != before[h] for h in before)
    by_host = rows(report)
    assert by_host['ufw1']['state'] == 'degraded' and by_host['ufw1']['protocol'] == 'http2'  # cloudflared runs there
    assert by_host['fw1']['state'] == 'ok' and by_host['nft1']['state'] == 'ok'

    rc, output, recap, dummy = playbook(lab, tmp_path, 'site', '-e', 'egress_firewall_default_deny=true')
    assert rc == 0 and all(recap[h]['changed'] == 0 for h in FLEET), output

    rc, output, recap, dummy = playbook(lab, tmp_path, 'remove', '--check')
    assert rc == 0 and rulesets(lab) == applied, output
    rc, output, recap, dummy = playbook(lab, tmp_path, 'remove')
    assert rc == 0 and all(recap[h]['changed'] > 0 for h in FLEET), output
    assert rulesets(lab) == before


def test_the_plan_is_resolved_once_whatever_the_number_of_hosts(fleet, tmp_path):
    lab = fleet
    counts = {}
    for targets in ('fw1', ':'.join(FLEET)):
        lab.dns.clear_log()
        rc, output, dummy, report = playbook(lab, tmp_path / targets.replace(':', '-'), 'check', targets=targets)
        assert rc == 0, output
        assert len(report['rows']) == len(targets.split(':'))
        # The hosts' own DNS checks come from their addresses and are left out.
        counts[targets] = len(lab.controller_queries())
    assert counts['fw1'] > 0 and counts['fw1'] == counts[':'.join(FLEET)], counts


def test_a_host_the_role_fails_on_is_failed_and_the_report_says_why(fleet, tmp_path):
    lab = fleet
    assert lab.hosts_with('none'), 'the default lab has a host without firewall'
    host = lab.hosts_with('none')[0]
    # `auto` would choose nftables there (nft works on every lab host); asking for ufw, which is installed there
    # (the lab's hosts share the machine's packages) but not enabled, is the mistake this test needs.
    backend = '{"egress_firewall_backend": "{{ \'ufw\' if inventory_hostname == \'%s\' else \'auto\' }}"}' % host
    rc, output, recap, report = playbook(lab, tmp_path, 'site', '-e', backend, targets='fw1:' + host)
    assert rc != 0 and recap[host]['failed'] == 1 and recap['fw1']['failed'] == 0, output
    by_host = rows(report)
    assert by_host['fw1']['state'] == 'ok'
    assert by_host[host]['state'] == 'failing' and by_host[host]['protocol'] == 'quic'  # it reaches the edge
    # ...but the change failed, and the row says so up front, not only under "What to fix".
    assert by_host[host]['firewall'] == {'state': 'failed', 'text': 'failed'} and by_host['fw1']['firewall']['state'] == 'ok'
    assert by_host[host]['why'].startswith('egress_firewall on %s (ufw): ' % host)
    assert [row['host'] for row in report['rows']] == [host, 'fw1']  # worst first
    # ufw_egress refuses to write rules that would protect nothing.
    problem = [p for p in by_host[host]['problems'] if p.startswith('egress_firewall on %s (ufw): ' % host)]
    assert problem and 'ufw is installed but inactive' in problem[0], by_host[host]['problems']
    assert problem[0].endswith('Nothing to roll back: the firewall is as before this run.')
