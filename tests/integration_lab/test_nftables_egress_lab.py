# -*- coding: utf-8 -*-
"""nftables_egress run by Ansible over SSH on the lab's nftables host (no firewalld, no ufw), proven with packets.

The same checks as the ufw and firewalld suites: allowed / refused at once / idempotent / check and diff identical to
the real run / rotation prunes / another table survives / absent restores exactly. The dead-man revert after a
SIGKILL is in test_egress_transaction_lab.py (parametrised over the three backends) and, without the lab, in
test_nftables_backend.py.
"""

from __future__ import annotations

import copy

import pytest

from tests.integration_lab import test_ufw_egress_lab as ufw_suite
from tests.integration_lab.test_ufw_egress_lab import API4, API6, DECOY4, DECOY6, DROPPED, reaches

# Tests marked `once` prove packets, rulesets and files, the same whatever ansible-core started the module: `make test`
# runs them in the latest venv only. Check and diff mode, which ansible-core carries, run with each.
MODULE = 'tunnelwall.cloudflared.nftables_egress'
FILES = '/etc/nftables.d /etc/systemd/system'
# A table of the user's own: it counts what reaches the decoy's port 9 and must come through every run untouched.
USER_TABLE = ('table ip user_counts {\n\tchain output {\n\t\ttype filter hook output priority 10; policy accept;\n'
              '\t\tip daddr %s tcp dport 9 accept\n\t}\n}\n' % DECOY4)


@pytest.fixture
def nft_lab(lab):
    """The lab with its nftables host as `up` left it (empty ruleset, no file of ours), before and after the test."""
    host = lab.hosts_with('nftables')[0]
    lab.reset_firewalls([host])
    yield lab, host
    lab.reset_firewalls([host])


def state(lab, host):
    """The host's whole ruleset and every file of ours under /etc/nftables.d and /etc/systemd/system, by content."""
    # Not the boot check (egress_transaction's, host-wide and idle without a pending record): it stays once installed.
    files = lab.exec(host, ['sh', '-c', 'find %s -type f ! -name "tunnelwall-boot-revert.*" 2>/dev/null | sort | '
                            'xargs -r sha256sum' % FILES], check=True).stdout
    return lab.exec(host, ['nft', 'list', 'ruleset'], check=True).stdout, files


def run_module(lab, host, args, check=False, diff=False, module=MODULE):
    """nftables_egress (by default) ad hoc over SSH, as the ufw suite runs ufw_egress."""
    return ufw_suite.run_module(lab, host, args, check=check, diff=diff, module=module)


def nft(lab, host, *args, stdin=None):
    return lab.exec(host, ['nft'] + list(args), check=True, stdin=stdin).stdout


def assert_rejected(lab, host, address, port):
    """Blocked, and told so at once (TCP reset from our reject), in both families."""
    result = lab.probe(host, 'connect', address, port, timeout=DROPPED)
    assert not result['ok'], (host, address, port, result)
    assert result['error'] == 'refused' and result['elapsed'] < DROPPED / 2, (host, address, port, result)


def deny(plan, **extra):
    return dict({'rules': plan['rules'], 'default_deny': True}, **extra)


@pytest.mark.once
def test_default_deny_allows_exactly_the_plan_dns_and_ssh_proven_with_packets(nft_lab, plan):
    lab, host = nft_lab
    assert reaches(lab, host, 'connect', DECOY4, 443)['ok']  # positive control
    result = run_module(lab, host, deny(plan))
    assert not result['failed'], result.get('msg')
    assert result['changed'] is True and result['table'] == 'inet tunnelwall'
    assert result['module'] == 'tunnelwall.cloudflared.nftables_egress'
    assert 'tunnel_udp_7844_v4' in result['sets'] and 'dns_udp_53_v4' in result['sets']
    assert result['nameservers'] == ['198.51.100.253', '2001:db8:e::253']
    ufw_suite.assert_plan_reachable(lab, host, plan)
    # Nothing else, refused at once in both families (ufw's IPv6 reject only times out; ours is a TCP reset).
    for address, port in ((DECOY4, 443), (DECOY6, 443), (DECOY4, 7844), (API4, 7844), (API6, 7844), ('198.51.100.11', 443)):
        assert_rejected(lab, host, address, port)
    assert run_module(lab, host, {}, module='ansible.builtin.ping').get('ping') == 'pong'  # a new SSH session
    before = state(lab, host)
    again = run_module(lab, host, deny(plan))
    assert not again['failed'] and again['changed'] is False and again['files'] == [] and again['commands'] == []
    assert state(lab, host) == before


def test_check_and_diff_mode_report_the_exact_change_and_leave_the_host_untouched(nft_lab, plan):
    lab, host = nft_lab
    before = state(lab, host)
    checked = run_module(lab, host, deny(plan), check=True, diff=True)
    assert not checked['failed'], checked.get('msg')
    assert checked['changed'] is True and state(lab, host) == before
    applied = run_module(lab, host, deny(plan), diff=True)
    assert applied['diff'] == checked['diff']  # byte for byte: both are what nft lists
    assert applied['files'] == checked['files'] and len(applied['files']) == 3
    assert applied['diff']['after'] == nft(lab, host, 'list', 'table', 'inet', 'tunnelwall')
    rechecked = run_module(lab, host, deny(plan), check=True, diff=True)
    assert rechecked['changed'] is False and rechecked['diff']['before'] == rechecked['diff']['after']


@pytest.mark.once
def test_rotation_prunes_the_stale_destinations_and_another_table_survives(nft_lab, plan):
    lab, host = nft_lab
    nft(lab, host, '-f', '-', stdin=USER_TABLE)
    user_table = nft(lab, host, 'list', 'table', 'ip', 'user_counts')
    assert not run_module(lab, host, deny(plan))['failed']
    assert reaches(lab, host, 'connect', '198.51.100.21', 7844)['ok']
    rotated = copy.deepcopy(plan)
    for rule in rotated['rules']:
        if rule['purpose'] == 'tunnel':
            rule['ipv4'] = [c for c in rule['ipv4'] if not c.startswith('198.51.100.2')] + ['198.51.100.31/32']
            rule['ipv6'] = [c for c in rule['ipv6'] if not c.startswith('2001:db8:e::2')]
    second = run_module(lab, host, deny(rotated))
    assert not second['failed'] and second['changed'] is True, second.get('msg')
    assert second['files'] == [f for f in second['files'] if f.endswith('-egress.nft')]  # the unit did not change
    assert reaches(lab, host, 'connect', '198.51.100.31', 7844)['ok']
    for address in ('198.51.100.21', '2001:db8:e::21', '198.51.100.32'):
        assert_rejected(lab, host, address, 7844)
    assert nft(lab, host, 'list', 'table', 'ip', 'user_counts') == user_table
    assert not run_module(lab, host, {'state': 'absent'})['failed']
    assert nft(lab, host, 'list', 'table', 'ip', 'user_counts') == user_table


@pytest.mark.once
def test_absent_gives_back_exactly_the_host_as_it_was(nft_lab, plan):
    lab, host = nft_lab
    nft(lab, host, '-f', '-', stdin=USER_TABLE)
    before = state(lab, host)
    assert not run_module(lab, host, deny(plan, allow_metadata=True))['failed']
    assert state(lab, host) != before
    unit = lab.exec(host, ['cat', '/etc/systemd/system/tunnelwall-nftables-tunnelwall.service'], check=True).stdout
    assert 'ExecStart=' in unit and '-f /etc/nftables.d/tunnelwall-egress.nft' in unit
    removed = run_module(lab, host, {'state': 'absent'})
    assert not removed['failed'] and removed['changed'] is True, removed.get('msg')
    assert sorted(removed['files']) == ['/etc/nftables.d/tunnelwall-egress.nft',
                                        '/etc/systemd/system/sysinit.target.d/tunnelwall-nftables-tunnelwall.conf',
                                        '/etc/systemd/system/tunnelwall-nftables-tunnelwall.service']
    assert state(lab, host) == before
    assert reaches(lab, host, 'connect', DECOY4, 443)['ok']
    assert run_module(lab, host, {'state': 'absent'})['changed'] is False


@pytest.mark.once
def test_a_failed_verification_restores_the_previous_table_at_once(nft_lab, plan):
    lab, host = nft_lab
    assert not run_module(lab, host, deny(plan))['failed']
    before = state(lab, host)
    # Every tunnel destination moves to the decoy, which serves no tunnel: the probe after the change fails.
    broken = copy.deepcopy(plan)
    for rule in broken['rules']:
        if rule['purpose'] == 'tunnel':
            rule['ipv4'], rule['ipv6'] = [DECOY4 + '/32'], []
    result = run_module(lab, host, deny(broken, verify={'plan': plan, 'timeout': 1.0, 'ca_path': lab.ca}))
    assert result['failed'] and 'verification failed after applying the rules' in result['msg'], result
    assert 'Rolled back: the firewall is as before this run' in result['msg']
    assert result['rolled_back'] is True
    assert state(lab, host) == before
