# -*- coding: utf-8 -*-
"""egress_transaction and egress_revert on real files and real processes: a backend that writes one file stands in
for the firewall (the lab tests do the same with firewalld and ufw)."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import time

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request, egress_revert, egress_transaction as tx

# Files, locks and processes, no Ansible: `make test` runs this once, in the latest venv (marker `once`, see the
# Makefile).
pytestmark = pytest.mark.once


class FileBackend:
    """Its 'firewall' is one file; reloading it appends to a log, so the test sees the restore load it."""

    def __init__(self, root, wanted):
        self.root = root
        self.path = os.path.join(root, 'rules')
        self.log = os.path.join(root, 'reloads')
        self.record_path = os.path.join(root, 'pending.json')
        self.wanted = wanted
        self.committed = False

    def plan(self):
        return {'changed': egress_revert.read_text(self.path) != self.wanted}

    def files(self):
        return [self.path]

    def reload_commands(self):
        return [['sh', '-c', 'echo reloaded >> %s' % self.log]]

    def apply(self):
        egress_revert.write_durably(self.path, self.wanted)

    def commit(self):
        self.committed = True


def command(argv):
    import subprocess
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def request(confirm=2, lock=1):
    return egress_request.build({'rules': [], 'confirm_timeout': confirm, 'lock_timeout': lock}, 'ufw')


def start(root, wanted, verify, confirm=2):
    backend = FileBackend(root, wanted)
    return backend, tx.run(backend, request(confirm), verify, run_dir=os.path.join(root, 'run'), command=command)


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def sleepers(root):
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                if (root + '/run/revert.py').encode() in handle.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture
def root(tmp_path):
    (tmp_path / 'rules').write_text('old\n')
    yield str(tmp_path)
    for pid in sleepers(str(tmp_path)):
        os.kill(pid, signal.SIGKILL)


def test_a_verified_change_is_committed_and_its_revert_disarmed(root):
    backend, result = start(root, 'new\n', lambda: (True, {'ok': 1}, ''))
    assert result['changed'] and result['verification'] == {'ok': 1} and backend.committed
    assert result['transaction']['armed']['how'] == 'process' and result['transaction']['confirmed']
    assert not os.path.exists(backend.record_path)
    assert wait_for(lambda: not sleepers(root), 3)  # the revert process ends with the confirmation
    time.sleep(2.5)
    assert open(backend.path).read() == 'new\n'


def test_a_failed_verification_restores_at_once(root):
    with pytest.raises(tx.TransactionError) as error:
        start(root, 'new\n', lambda: (False, {'unmet': ['any_tunnel']}, 'any_tunnel: timeout'))
    assert str(error.value) == ('verification failed after applying the rules - any_tunnel: timeout. '
                                'Rolled back: the firewall is as before this run.')
    assert error.value.details['transaction']['restore_message'].startswith('restored the state before run')
    assert error.value.details['rolled_back'] is True and error.value.details['verification'] == {'unmet': ['any_tunnel']}
    assert open(os.path.join(root, 'rules')).read() == 'old\n'
    assert open(os.path.join(root, 'reloads')).read() == 'reloaded\n'
    assert not os.path.exists(os.path.join(root, 'pending.json'))


def test_check_mode_and_no_change_write_nothing(root):
    backend = FileBackend(root, 'old\n')
    result = tx.run(backend, request(), None, run_dir=os.path.join(root, 'run'), command=command)
    assert result['changed'] is False and not os.path.exists(backend.record_path)
    backend.wanted = 'new\n'
    result = tx.run(backend, request(), None, check_mode=True, run_dir=os.path.join(root, 'run'), command=command)
    assert result['changed'] is True and open(backend.path).read() == 'old\n' and not os.path.exists(backend.record_path)


def _die_while_verifying(root):
    start(root, 'new\n', lambda: (time.sleep(60), (True, {}, ''))[1], confirm=2)


def test_a_killed_transaction_is_restored_by_the_detached_revert(root):
    child = multiprocessing.get_context('fork').Process(target=_die_while_verifying, args=(root,))
    child.start()
    record = os.path.join(root, 'pending.json')
    assert wait_for(lambda: os.path.exists(record) and json.load(open(record)).get('applied'), 10)
    assert open(os.path.join(root, 'rules')).read() == 'new\n'
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert wait_for(lambda: not os.path.exists(record), 2 + 5)
    assert open(os.path.join(root, 'rules')).read() == 'old\n'
    assert 'restored the state before run' in open(os.path.join(root, 'run', 'revert.log')).read()
    assert wait_for(lambda: not sleepers(root), 3)


def test_the_next_run_restores_what_a_dead_run_left_pending_first(root):
    record = {'id': '1-1', 'files': {os.path.join(root, 'rules'): 'older\n'}, 'reload': [], 'applied': None}
    egress_revert.write_durably(os.path.join(root, 'pending.json'), json.dumps(record))
    backend, result = start(root, 'new\n', None)
    assert result['transaction']['settled'].startswith('a previous run (1-1')
    assert open(backend.path).read() == 'new\n'


def test_the_revert_never_restores_over_a_change_it_did_not_make(root):
    path = os.path.join(root, 'rules')
    record = {'id': '1-1', 'files': {path: 'older\n'}, 'reload': [],
              'applied': {path: egress_revert.digest('what the change left\n')}}
    egress_revert.write_durably(os.path.join(root, 'pending.json'), json.dumps(record))
    restored, message = egress_revert.restore(os.path.join(root, 'pending.json'))
    assert not restored and message.startswith('not restored: %s changed' % path)
    assert open(path).read() == 'old\n' and not os.path.exists(os.path.join(root, 'pending.json'))


def test_a_held_lock_is_waited_for_then_refused_naming_its_holder(root):
    run_dir = os.path.join(root, 'run')
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, 'egress.lock'), 'w') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write('pid 42, tunnelwall ufw egress change, name other\n')
        held.flush()
        started = time.monotonic()
        with pytest.raises(tx.TransactionError, match=r'holds the host-wide lock .*pid 42, tunnelwall ufw egress change'):
            start(root, 'new\n', None)
        assert 1 <= time.monotonic() - started < 3
    assert open(os.path.join(root, 'rules')).read() == 'old\n'


def test_the_revert_program_runs_from_its_own_source():
    source = tx.revert_source()
    assert 'def wait_and_restore' in source and 'import ansible' not in source and 'from ansible' not in source
    compile(source, 'revert.py', 'exec')


def test_a_probe_that_crashes_counts_as_a_failed_verification_and_restores(root):
    def crash():
        raise OSError('no socket for you')
    with pytest.raises(tx.TransactionError) as error:
        start(root, 'new\n', crash)
    assert str(error.value) == 'no socket for you. Rolled back: the firewall is as before this run.'
    assert error.value.details['rolled_back'] is True
    assert open(os.path.join(root, 'rules')).read() == 'old\n' and not os.path.exists(os.path.join(root, 'pending.json'))
