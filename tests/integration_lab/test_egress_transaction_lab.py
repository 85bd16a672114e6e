# -*- coding: utf-8 -*-
"""The egress change as one transaction on the host, tried the way it breaks: killed mid-way, overlapping, bad input.

Real firewalld and ufw on lab hosts, Ansible over SSH, the state compared with nft's ruleset and /etc's files.
The dead-man revert is tested on both of its paths: the detached process (the lab has no systemd) and systemd-run,
through a stand-in of systemd-run/systemctl in the host's private /run (never the machine's own systemd).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.lab import config

BIN = os.path.dirname(sys.executable)
MODULES = {'ufw': 'tunnelwall.cloudflared.ufw_egress', 'firewalld': 'tunnelwall.cloudflared.firewalld_egress',
           'nftables': 'tunnelwall.cloudflared.nftables_egress'}
HOSTS = {'ufw': 'ufw2', 'firewalld': 'fw2', 'nftables': 'nft1'}
RECORDS = {'ufw': '/etc/ufw/tunnelwall-pending.json', 'firewalld': '/etc/firewalld/tunnelwall-pending.json',
           'nftables': '/etc/nftables.d/tunnelwall-pending.json'}
# Where each backend keeps what it writes under /etc.
FILES = {'ufw': '/etc/ufw /etc/default/ufw', 'firewalld': '/etc/firewalld', 'nftables': '/etc/nftables.d /etc/systemd/system'}
CONFIRM = 3  # seconds of the dead-man timer in these tests

# Tests marked `once` kill runs and overlap them: what the host's transaction and dead-man revert then do is the
# same whatever ansible-core started the module, so `make test` runs them in the latest venv only (see the
# Makefile). Bad requests go through ansible-core's argument handling and run in both venvs.
STANDIN = '/run/tunnelwall-standin'
# A systemd-run and systemctl that do what the module asks of them without systemd: a timer is a sleeping process
# in its own session; every call is logged so the test sees what the module asked.
SYSTEMD_RUN = r'''#!/bin/sh
echo "systemd-run $*" >> %(dir)s/calls
unit=; after=
while [ $# -gt 0 ]; do
  case "$1" in
    --unit=*) unit="${1#--unit=}";;
    --on-active=*) after="${1#--on-active=}"; after="${after%%s}";;
    --*) ;;
    *) break;;
  esac
  shift
done
setsid sh -c 'sleep "$0"; exec "$@"' "$after" "$@" </dev/null >/dev/null 2>&1 &
echo $! > %(dir)s/$unit.pid
'''
SYSTEMCTL = r'''#!/bin/sh
echo "systemctl $*" >> %(dir)s/calls
unit="${2%%.timer}"
[ -f %(dir)s/$unit.pid ] && kill "$(cat %(dir)s/$unit.pid)" 2>/dev/null
exit 0
'''


@pytest.fixture
def hosts(lab):
    lab.reset_firewalls(HOSTS.values())
    yield lab
    lab.reset()
    for host in HOSTS.values():
        lab.exec(host, ['rm', '-rf', STANDIN, '/run/systemd'])
    lab.reset_firewalls(HOSTS.values())


def state(lab, host):
    """What the kernel enforces (counters masked, lines sorted) and every file of the firewall's /etc, by content."""
    etc = FILES[next(backend for backend, name in HOSTS.items() if name == host)]
    # The boot check (unit, drop-in) stays once installed: it is the transaction's, not the firewall's, and idle.
    files = lab.exec(host, ['sh', '-c', 'find %s -type f ! -name "tunnelwall-boot-revert.*" 2>/dev/null | sort | '
                            'xargs -r sha256sum' % etc], check=True).stdout
    return sorted(lab.nft_ruleset(host).splitlines()), files


def args_for(backend, plan, lab, **extra):
    args = dict(rules=plan['rules'], default_deny=True, confirm_timeout=CONFIRM,
                verify=dict(plan=plan, timeout=1.5, ca_path=lab.ca))
    args.update(extra)
    return args


def ansible(lab, host, module, args, playbook_env=None):
    """Start the module on ``host`` (ad-hoc, or a one-task playbook when ``playbook_env`` sets its environment)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_LOAD_CALLBACK_PLUGINS='0')
    if playbook_env is None:
        command = [os.path.join(BIN, 'ansible'), host, '-i', lab.inventory, '-m', module, '-o', '-a', json.dumps(args)]
    else:
        task = {'name': 'egress change', module: args, 'environment': playbook_env}
        path = os.path.join(lab.dir, 'transaction-play.yml')
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump([{'hosts': host, 'gather_facts': False, 'tasks': [task]}], handle)
        command = [os.path.join(BIN, 'ansible-playbook'), '-i', lab.inventory, path]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=config.REPO)


def result_of(process, host, timeout=120):
    output = process.communicate(timeout=timeout)[0]
    for line in output.splitlines():
        if line.startswith(host + ' | ') and ' => ' in line:
            status, text = line.split(' => ', 1)
            return dict(json.loads(text), failed=' | FAILED' in status)
    raise AssertionError(output)


def pending(lab, backend):
    text = lab.exec(HOSTS[backend], ['cat', RECORDS[backend]]).stdout
    return json.loads(text) if text.strip() else None


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError('timed out waiting for %s' % what)


def revert_processes(lab):
    return [pid for host in HOSTS.values() for pid in lab.exec(host, ['pgrep', '-f', '/run/tunnelwall/revert.py']).stdout.split()]


def hang_the_edge(lab, host):
    """The edge drops everything from ``host``: the verification hangs until its timeout."""
    lab.fault('udp7844', 'drop', host)
    lab.fault('tcp7844', 'drop', host)


@pytest.mark.once
@pytest.mark.parametrize('backend', ['ufw', 'firewalld', 'nftables'])
def test_sigkill_to_the_module_mid_verification_is_undone_by_the_detached_revert(hosts, plan, backend):
    lab, host = hosts, HOSTS[backend]
    before = state(lab, host)
    hang_the_edge(lab, host)
    process = ansible(lab, host, MODULES[backend], args_for(backend, plan, lab, verify=dict(plan=plan, timeout=30, ca_path=lab.ca)))
    record = wait_for(lambda: (pending(lab, backend) or {}).get('applied') and pending(lab, backend), 60, 'the change')
    assert record['armed']['how'] == 'process' and record['armed']['pid']
    assert state(lab, host) != before  # applied, now verifying
    os.kill(record['pid'], signal.SIGKILL)  # the module (no PID namespace in the lab: its pid is ours to signal)
    process.communicate(timeout=60)
    wait_for(lambda: pending(lab, backend) is None, CONFIRM + 15, 'the dead-man revert')
    assert state(lab, host) == before
    wait_for(lambda: not revert_processes(lab), 5, 'the revert process to end')  # it logs after the record goes
    assert 'dead-man revert of %s: restored' % record['id'] in lab.exec(host, ['cat', '/run/tunnelwall/revert.log']).stdout


@pytest.mark.once
def test_sigkill_to_the_module_is_undone_through_a_systemd_timer(hosts, plan):
    lab, host = hosts, HOSTS['ufw']
    lab.exec(host, ['sh', '-c', 'mkdir -p /run/systemd/system %s' % STANDIN], check=True)
    for name, text in (('systemd-run', SYSTEMD_RUN), ('systemctl', SYSTEMCTL)):
        lab.exec(host, ['sh', '-c', 'cat > %s/%s && chmod 755 %s/%s' % (STANDIN, name, STANDIN, name)],
                 stdin=text % {'dir': STANDIN}, check=True)
    before = state(lab, host)
    hang_the_edge(lab, host)
    env = {'PATH': STANDIN + ':' + config.HOST_PATH}
    process = ansible(lab, host, MODULES['ufw'], args_for('ufw', plan, lab, verify=dict(plan=plan, timeout=30, ca_path=lab.ca)),
                      playbook_env=env)
    record = wait_for(lambda: (pending(lab, 'ufw') or {}).get('applied') and pending(lab, 'ufw'), 60, 'the change')
    assert record['armed']['how'] == 'systemd' and record['armed']['unit'] == 'tunnelwall-revert-%s.timer' % record['id']
    calls = lab.exec(host, ['cat', STANDIN + '/calls']).stdout
    assert '--on-active=%ds' % CONFIRM in calls and '--unit=tunnelwall-revert-%s' % record['id'] in calls
    os.kill(record['pid'], signal.SIGKILL)
    process.communicate(timeout=60)
    wait_for(lambda: pending(lab, 'ufw') is None, CONFIRM + 15, 'the revert the timer started')
    assert state(lab, host) == before
    lab.reset()

    # A confirmed change stops its timer: no revert is left waiting.
    process = ansible(lab, host, MODULES['ufw'], args_for('ufw', plan, lab), playbook_env=env)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output
    calls = lab.exec(host, ['cat', STANDIN + '/calls']).stdout.splitlines()
    assert calls[-1].startswith('systemctl stop tunnelwall-revert-') and calls[-1].endswith('.timer'), calls
    time.sleep(CONFIRM + 1)
    assert pending(lab, 'ufw') is None and state(lab, host) != before  # the confirmed change stays


@pytest.mark.once
def test_sigkill_to_ansible_playbook_leaves_the_host_as_before_within_the_confirm_timeout(hosts, plan):
    """The controller dies; the module on the host lives on, fails its verification and restores by itself."""
    lab, host = hosts, HOSTS['firewalld']
    before = state(lab, host)
    hang_the_edge(lab, host)
    process = ansible(lab, host, MODULES['firewalld'], args_for('firewalld', plan, lab, verify=dict(plan=plan, timeout=2, ca_path=lab.ca)),
                      playbook_env={})
    wait_for(lambda: (pending(lab, 'firewalld') or {}).get('applied'), 60, 'the change')
    process.kill()
    process.communicate(timeout=30)
    killed = time.monotonic()
    wait_for(lambda: pending(lab, 'firewalld') is None, CONFIRM + 10, 'the restore')
    assert time.monotonic() - killed < CONFIRM + 10
    assert state(lab, host) == before
    wait_for(lambda: not revert_processes(lab), 5, 'the revert process to end')


@pytest.mark.once
@pytest.mark.parametrize('kill_when', ['before', 'after'])
def test_a_run_killed_around_the_policy_change_never_leaves_a_deny_all(hosts, plan, kill_when):
    """A ufw stand-in kills the module just before, or just after, `ufw default reject outgoing`; the dead-man is off.

    The next run - state=absent - restores what the dead run left pending, then removes: the original policy is back."""
    lab, host = hosts, HOSTS['ufw']
    wrapper = ('#!/bin/sh\n'
               'if [ "$1" = default ] && [ "$3" = outgoing ]; then\n'
               '  if [ %(kill)s = before ]; then kill -9 $PPID; exit 1; fi\n'
               '  /usr/sbin/ufw "$@"; rc=$?\n'
               '  kill -9 $PPID; exit $rc\n'
               'fi\n'
               'exec /usr/sbin/ufw "$@"\n') % {'kill': kill_when}
    lab.exec(host, ['sh', '-c', 'mkdir -p %s && cat > %s/ufw && chmod 755 %s/ufw' % (STANDIN, STANDIN, STANDIN)],
             stdin=wrapper, check=True)
    before = state(lab, host)
    process = ansible(lab, host, MODULES['ufw'], args_for('ufw', plan, lab, confirm_timeout=0),
                      playbook_env={'PATH': STANDIN + ':' + config.HOST_PATH})
    process.communicate(timeout=120)
    assert pending(lab, 'ufw') is not None  # killed mid-change
    policy = lab.exec(host, ['ufw', 'status', 'verbose']).stdout
    assert ('reject (outgoing)' in policy) == (kill_when == 'after')
    removed = result_of(ansible(lab, host, MODULES['ufw'], {'state': 'absent'}), host)
    assert not removed['failed'], removed
    assert removed['transaction']['settled'].startswith('a previous run')
    assert state(lab, host) == before
    assert 'allow (outgoing)' in lab.exec(host, ['ufw', 'status', 'verbose']).stdout


@pytest.mark.once
def test_overlapping_runs_wait_for_each_other_and_the_failing_one_never_undoes_the_other(hosts, plan):
    lab, host = hosts, HOSTS['firewalld']
    # One tunnel address, allowed by the rules but dropped at the edge: verifying against it alone hangs.
    silent = [e for e in plan['endpoints'] if e['purpose'] == 'tunnel'][0]['ipv4'][0]
    lab.fault('addresses', 'drop', silent)
    doomed_plan = dict(plan, endpoints=[dict(e, ipv4=[silent], ipv6=[]) for e in plan['endpoints'] if e['purpose'] == 'tunnel'])
    first = ansible(lab, host, MODULES['firewalld'], args_for('firewalld', plan, lab, verify=dict(plan=doomed_plan, timeout=20, ca_path=lab.ca)))
    wait_for(lambda: (pending(lab, 'firewalld') or {}).get('applied'), 60, 'the first change')
    extra = [{'protocol': 'tcp', 'port': 9, 'destinations': [config.DNS_HOST_ADDRESSES[0]]}]
    second = ansible(lab, host, MODULES['firewalld'], args_for('firewalld', plan, lab, extra_allow=extra))
    first_result, second_result = result_of(first, host), result_of(second, host)
    assert first_result['failed'] and 'verification failed' in first_result['msg'], first_result
    assert first_result['rolled_back'] is True
    assert not second_result['failed'], second_result['msg']
    assert second_result['transaction']['waited_for_lock'] is True, first_result['msg']
    rules = lab.exec(host, ['firewall-cmd', '--policy=tunnelwall-egress', '--list-rich-rules'], check=True).stdout
    assert 'address="%s"' % config.DNS_HOST_ADDRESSES[0] in rules and 'port="9"' in rules  # the second change survived
    assert pending(lab, 'firewalld') is None


BAD_REQUESTS = [
    ({'rules': [], 'default_deny': True}, "default_deny=True: no tunnel destination in rules"),
    ({'rules': [{'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80/32']}], 'default_deny': True},
     'default_deny=True: no tunnel destination in rules'),
    ({'rules': [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv6': ['fe80::1%eth0']}]},
     "rules[0].ipv6[0]='fe80::1%eth0': an IPv6 zone id"),
    ({'name': 'tw\n', 'rules': []}, "name='tw\\n': expected ASCII letters"),
    ({'rules': [{'purpose': 'tunnel\n', 'protocol': 'tcp', 'port': 7844}]}, "rules[0].purpose='tunnel\\n'"),
    ({'rules': [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 65536}]}, 'rules[0].port=65536: expected a port'),
    ({'rules': [], 'dns_servers': ['fe80::53%eth0'], 'default_deny': False}, "dns_servers[0]='fe80::53%eth0': an IPv6 zone id"),
    ({'rules': [], 'confirm_timeout': -1}, 'confirm_timeout=-1: expected whole seconds'),
]


@pytest.mark.parametrize('args, message', BAD_REQUESTS, ids=[m.split(':')[0] for dummy, m in BAD_REQUESTS])
def test_one_bad_request_gets_the_same_answer_from_every_module_before_the_host_is_read(hosts, args, message):
    """Asked on a host without any firewall: the request's own error comes first, the same from every module."""
    answers = {}
    for backend, module in MODULES.items():
        result = result_of(ansible(hosts, 'none1', module, args), 'none1')
        assert result['failed'] and result['module'] == module, result
        answers[backend] = result['msg']
    assert len(set(answers.values())) == 1, answers
    assert answers['ufw'].startswith(message), answers


FOREIGN_SOURCE = '203.0.113.77'  # the address another writer bans (fail2ban with banaction=ufw)


def policy_and_rules(lab, host):
    status = lab.exec(host, ['ufw', 'status', 'verbose'], check=True).stdout
    return status, lab.nft_ruleset(host)


@pytest.mark.once
@pytest.mark.parametrize('how', ['verification fails', 'sigkill'])
def test_another_ufw_writer_during_verification_keeps_its_rule_and_the_outgoing_policy_comes_back(hosts, plan, how):
    """fail2ban-style `ufw insert 1 deny from ...` while the change is being verified: the restore takes back only
    what the module did (its rules, the reject policy) and the other writer's rule stays, in the files and live."""
    lab, host = hosts, HOSTS['ufw']
    assert 'allow (outgoing)' in policy_and_rules(lab, host)[0]
    hang_the_edge(lab, host)
    timeout = 6 if how == 'verification fails' else 30
    process = ansible(lab, host, MODULES['ufw'], args_for('ufw', plan, lab, verify=dict(plan=plan, timeout=timeout, ca_path=lab.ca)))
    record = wait_for(lambda: (pending(lab, 'ufw') or {}).get('applied') and pending(lab, 'ufw'), 60, 'the change')
    assert 'reject (outgoing)' in policy_and_rules(lab, host)[0]
    lab.exec(host, ['ufw', 'insert', '1', 'deny', 'from', FOREIGN_SOURCE], check=True)
    if how == 'sigkill':
        os.kill(record['pid'], signal.SIGKILL)
        process.communicate(timeout=60)
        wait_for(lambda: pending(lab, 'ufw') is None, CONFIRM + 15, 'the dead-man revert')
        wait_for(lambda: not revert_processes(lab), 5, 'the revert process to end')  # it logs after the record goes
        log = lab.exec(host, ['cat', '/run/tunnelwall/revert.log']).stdout
        assert 'dead-man revert of %s: restored the state before run' % record['id'] in log, log
        assert 'user.rules: kept what another writer changed since this run' in log, log
    else:
        result = result_of(process, host)
        assert result['failed'] and result['rolled_back'] is True, result
        assert 'Rolled back: the firewall is as before this run' in result['msg']
        assert 'user.rules: kept what another writer changed since this run' in result['msg'], result['msg']
        assert pending(lab, 'ufw') is None
    status, ruleset = policy_and_rules(lab, host)
    assert 'allow (outgoing)' in status, status
    assert 'DENY IN' in status and FOREIGN_SOURCE in status, status  # the other writer's rule, in ufw's files
    assert FOREIGN_SOURCE in ruleset  # and live
    assert 'tunnelwall:' not in status and '7844' not in ruleset  # none of the module's rules stayed


def boot_unit_execstart(lab, host):
    unit = lab.exec(host, ['cat', '/etc/systemd/system/tunnelwall-boot-revert.service'], check=True).stdout
    return [line for line in unit.splitlines() if line.startswith('ExecStart=')][0][len('ExecStart='):]


@pytest.mark.once
@pytest.mark.parametrize('backend', ['ufw', 'nftables'])
def test_a_reboot_before_the_confirmation_restores_the_previous_state_at_boot(hosts, plan, backend):
    """A reboot while the change is verified: the module and its dead-man die with the host. At "boot" (processes
    gone, ruleset flushed) the boot check's ExecStart runs, then the firewall's own start: ufw's init, our nftables
    unit (when its ConditionPathExists holds). The ruleset is what it was before the run."""
    lab, host = hosts, HOSTS[backend]
    before = lab.nft_ruleset(host)
    hang_the_edge(lab, host)
    process = ansible(lab, host, MODULES[backend], args_for(backend, plan, lab, verify=dict(plan=plan, timeout=60, ca_path=lab.ca)))
    record = wait_for(lambda: (pending(lab, backend) or {}).get('applied') and pending(lab, backend), 60, 'the change')
    assert lab.nft_ruleset(host) != before
    os.kill(record['pid'], signal.SIGKILL)
    os.kill(record['armed']['pid'], signal.SIGKILL)  # the reboot ends the dead-man too
    process.communicate(timeout=60)
    assert not revert_processes(lab)
    lab.exec(host, ['nft', 'flush', 'ruleset'], check=True)
    lab.exec(host, ['sh', '-c', 'rm -rf /run/tunnelwall'], check=True)  # /run is a tmpfs
    # The lab keeps the kernel's boot id: the boot check restores once the deadline passed (a new boot id: at once).
    time.sleep(max(0.0, record['deadline'] - time.time()) + 0.5)
    booted = lab.exec(host, ['sh', '-c', boot_unit_execstart(lab, host)])
    assert booted.returncode == 0 and 'restored the state before run %s' % record['id'] in booted.stderr, booted.stderr
    assert pending(lab, backend) is None
    if backend == 'ufw':
        lab.exec(host, ['/lib/ufw/ufw-init', 'start'], check=True)
        assert 'allow (outgoing)' in lab.exec(host, ['ufw', 'status', 'verbose'], check=True).stdout
    else:
        unit = '/etc/systemd/system/tunnelwall-nftables-tunnelwall.service'
        assert lab.exec(host, ['test', '-e', unit]).returncode != 0  # the first run's unit is gone with its ruleset
    assert lab.nft_ruleset(host) == before
