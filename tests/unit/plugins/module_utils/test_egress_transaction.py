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
    with pytest.raises(tx.EgressError) as error:
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
    log = os.path.join(root, 'run', 'revert.log')  # written right after the record goes
    assert wait_for(lambda: os.path.exists(log) and 'restored the state before run' in open(log).read(), 3)
    assert wait_for(lambda: not sleepers(root), 3)


def test_the_next_run_restores_what_a_dead_run_left_pending_first(root):
    write_record(root, {'files': {os.path.join(root, 'rules'): 'older\n'}})
    backend, result = start(root, 'new\n', None)
    assert result['transaction']['settled'].startswith('a previous run (1-1')
    assert open(backend.path).read() == 'new\n'


USER_RULES = """*filter
### RULES ###

### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in
-A ufw-user-input -p tcp --dport 22 -j ACCEPT
%s
### END RULES ###
COMMIT
"""
OURS = """
### tuple ### allow tcp 7844 198.51.100.7 any 0.0.0.0/0 out comment=74773a74756e6e656c
-A ufw-user-output -p tcp -d 198.51.100.7 --dport 7844 -j ACCEPT"""
THEIRS = """### tuple ### deny any any 0.0.0.0/0 any 203.0.113.9 in
-A ufw-user-input -s 203.0.113.9 -j DROP
"""


def test_the_merge_takes_back_our_lines_and_keeps_another_writers():
    original, applied = USER_RULES % '', USER_RULES % OURS
    # fail2ban's `ufw insert 1 deny from ...` during the verification: a block at the top of the rules.
    current = applied.replace('### RULES ###\n', '### RULES ###\n' + THEIRS)
    merged = egress_revert.merge(original, applied, current)
    assert merged == original.replace('### RULES ###\n', '### RULES ###\n' + THEIRS)
    # /etc/default/ufw: our policy line goes back, another writer's line stays.
    defaults = 'IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n'
    ours = defaults.replace('"ACCEPT"', '"REJECT"')
    assert egress_revert.merge(defaults, ours, ours.replace('IPV6=yes', 'IPV6=no')) == defaults.replace('IPV6=yes', 'IPV6=no')
    assert egress_revert.merge(defaults, ours, ours) == defaults  # nobody else wrote
    assert egress_revert.merge(defaults, ours, defaults) == defaults  # already back
    with pytest.raises(ValueError):  # they changed our own line: a conflict
        egress_revert.merge(defaults, ours, defaults.replace('"ACCEPT"', '"DROP"'))


def write_record(root, record, mode=0o600):
    path = os.path.join(root, 'pending.json')
    egress_revert.write_durably(path, json.dumps(dict({'id': '1-1', 'applied': None}, **record)), mode)
    return path


def test_a_restore_keeps_lines_another_writer_added_to_a_shared_file_and_replaces_an_owned_one(root):
    shared, owned = os.path.join(root, 'user.rules'), os.path.join(root, 'rules')
    original, applied = USER_RULES % '', USER_RULES % OURS
    current = applied.replace('### RULES ###\n', '### RULES ###\n' + THEIRS)
    with open(shared, 'w') as handle:
        handle.write(current)
    path = write_record(root, {'files': {shared: original, owned: 'older\n'},
                               'applied': {shared: applied, owned: 'what the change left\n'}})
    outcome = egress_revert.restore(path, {'files': [shared, owned], 'shared': [shared], 'reload': []})
    assert outcome.status == egress_revert.FULL and outcome.message.startswith('restored the state before run 1-1')
    assert outcome.notes == ('%s: kept what another writer changed since this run' % shared,)
    assert open(shared).read() == original.replace('### RULES ###\n', '### RULES ###\n' + THEIRS)
    assert open(owned).read() == 'older\n'  # ours alone: put back whole, whatever is in it now
    assert not os.path.exists(path)


def test_a_conflicting_change_of_another_writer_still_restores_and_says_what_was_lost(root):
    shared = os.path.join(root, 'defaults')
    with open(shared, 'w') as handle:
        handle.write('POLICY="DROP"\n')
    path = write_record(root, {'files': {shared: 'POLICY="ACCEPT"\n'}, 'applied': {shared: 'POLICY="REJECT"\n'}})
    outcome = egress_revert.restore(path, {'files': [shared], 'shared': [shared], 'reload': []})
    assert outcome.status == egress_revert.FULL and 'their change there is lost' in outcome.notes[0]
    assert open(shared).read() == 'POLICY="ACCEPT"\n'  # the host's way out first


def test_a_hostile_record_names_files_and_commands_that_are_never_used(root):
    victim = os.path.join(root, 'victim')
    with open(victim, 'w') as handle:
        handle.write('mine\n')
    path = write_record(root, {'files': {os.path.join(root, 'rules'): 'older\n', victim: 'owned\n'},
                               'reload': [['sh', '-c', 'echo pwned > %s' % victim]]})
    outcome = egress_revert.restore(path, {'files': [os.path.join(root, 'rules')], 'reload': []})
    assert outcome.status == egress_revert.FULL and 'ignored %s: not a file of this backend' % victim in outcome.message
    assert open(victim).read() == 'mine\n' and open(os.path.join(root, 'rules')).read() == 'older\n'


@pytest.mark.parametrize('how', ['symlink', 'group-writable', 'other owner', 'directory group-writable'])
def test_a_record_that_is_not_provably_ours_is_refused_and_left_alone(root, how):
    path = os.path.join(root, 'pending.json')
    real = write_record(root, {'files': {os.path.join(root, 'rules'): 'older\n'}})
    if how == 'symlink':
        os.rename(real, os.path.join(root, 'elsewhere.json'))
        os.symlink(os.path.join(root, 'elsewhere.json'), path)
    elif how == 'group-writable':
        os.chmod(path, 0o620)
    elif how == 'other owner':
        if os.geteuid() != 0:
            pytest.skip('needs root to give the record away')
        os.chown(path, 65534, -1)
    else:
        os.chmod(root, 0o770)
    with pytest.raises(egress_revert.UntrustedRecord, match='it is not trusted and nothing was done with it'):
        egress_revert.restore(path, {'files': [os.path.join(root, 'rules')]})
    with pytest.raises(tx.EgressError, match='refusing the pending record of an earlier run'):
        start(root, 'new\n', None)
    assert open(os.path.join(root, 'rules')).read() == 'old\n' and os.path.lexists(path)


def test_the_dead_man_tries_a_failed_reload_again_and_removes_the_record_only_once_it_worked(root):
    counter = os.path.join(root, 'attempts')
    path = write_record(root, {'files': {os.path.join(root, 'rules'): 'older\n'}, 'deadline': 0})
    # The reload fails the first time, then works.
    reload = ['sh', '-c', 'echo x >> %s; [ "$(wc -l < %s)" -ge 2 ]' % (counter, counter)]
    spec = {'files': [os.path.join(root, 'rules')], 'reload': [reload]}
    log = os.path.join(root, 'log')
    assert egress_revert.wait_and_restore(path, '1-1', os.path.join(root, 'lock'), log, spec, retries=2,
                                          retry_seconds=0) == 0
    lines = open(log).read().splitlines()
    assert 'the pending record %s stays' % path in lines[0] and 'restored the state before run 1-1' in lines[1]
    assert not os.path.exists(path)


def test_the_dead_man_waits_for_the_host_lock_only_so_long(root):
    lock = os.path.join(root, 'lock')
    with open(lock, 'w') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        assert egress_revert.lock(lock, timeout=0.3) is None
        assert time.monotonic() - started < 2


def test_systemd_without_systemd_run_is_refused_rather_than_a_session_scoped_revert(root, monkeypatch):
    monkeypatch.setattr(tx, 'systemd_booted', lambda: True)
    backend = FileBackend(root, 'new\n')

    def which(name):
        return None if name == 'systemd-run' else '/bin/' + name
    with pytest.raises(tx.EgressError, match='systemd runs this host but systemd-run is missing'):
        tx.run(backend, request(), None, run_dir=os.path.join(root, 'run'), command=command, which=which)
    assert open(backend.path).read() == 'old\n' and not os.path.exists(backend.record_path)


def test_the_boot_check_restores_a_record_of_an_earlier_boot_without_reloading(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, 'etc/nftables.d'), 0o755)
    ruleset = os.path.join(root, 'etc/nftables.d/tw-egress.nft')
    with open(ruleset, 'w') as handle:
        handle.write('unconfirmed\n')
    record = os.path.join(root, 'etc/nftables.d/tunnelwall-pending.json')
    body = {'id': '1-1', 'backend': 'nftables', 'name': 'tw', 'boot_id': egress_revert.boot_id(),
            'deadline': time.time() + 600, 'files': {ruleset: None, '/etc/passwd': 'x'}, 'applied': None}
    egress_revert.write_durably(record, json.dumps(body), 0o600)
    assert egress_revert.boot(root) == 0  # this boot's run, within its time: left to its own dead-man
    assert os.path.exists(record) and os.path.exists(ruleset)
    egress_revert.write_durably(record, json.dumps(dict(body, boot_id='an-earlier-boot')), 0o600)
    assert egress_revert.boot(root) == 0
    assert not os.path.exists(record) and not os.path.exists(ruleset)  # the file the run created is gone


def test_the_boot_check_is_installed_as_a_unit_before_the_firewalls(tmp_path):
    systemd = tmp_path / 'systemd'
    systemd.mkdir()
    unit = tx.install_boot_check('/usr/bin/python3', str(tmp_path / 'tunnelwall'), str(systemd))
    text = open(unit).read()
    assert 'ExecStart=/usr/bin/python3 -I %s/tunnelwall/revert.py --boot\n' % tmp_path in text
    assert 'Before=ufw.service nftables.service firewalld.service network-pre.target' in text
    assert 'DefaultDependencies=no' in text and 'Type=oneshot' in text
    assert (systemd / 'sysinit.target.d' / 'tunnelwall-boot-revert.conf').read_text().endswith(
        'Wants=tunnelwall-boot-revert.service\n')
    assert 'def boot(' in (tmp_path / 'tunnelwall' / 'revert.py').read_text()
    assert tx.install_boot_check('/usr/bin/python3', str(tmp_path / 'x'), str(tmp_path / 'none')) is None


def test_a_held_lock_is_waited_for_then_refused_naming_its_holder(root):
    run_dir = os.path.join(root, 'run')
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, 'egress.lock'), 'w') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write('pid 42, tunnelwall ufw egress change, name other\n')
        held.flush()
        started = time.monotonic()
        with pytest.raises(tx.EgressError, match=r'holds the host-wide lock .*pid 42, tunnelwall ufw egress change'):
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
    with pytest.raises(tx.EgressError) as error:
        start(root, 'new\n', crash)
    assert str(error.value) == 'no socket for you. Rolled back: the firewall is as before this run.'
    assert error.value.details['rolled_back'] is True
    assert open(os.path.join(root, 'rules')).read() == 'old\n' and not os.path.exists(os.path.join(root, 'pending.json'))


LIST_ALL_ZONES = """block
  target: %%REJECT%%
  rich rules:
public (active)
  target: default
  services: dhcpv6-client ssh
  rich rules:
\trule family="ipv4" source address="203.0.113.55" reject
\trule family="ipv4" source address="203.0.113.7" port port="8080" protocol="tcp" accept

trusted
  target: ACCEPT
""".replace('rich rules:', 'rich rules: ')  # firewall-cmd prints a trailing space


def test_a_firewalld_reload_keeps_the_runtime_only_rich_rules_of_other_tools():
    """fail2ban's ban (runtime only) survives; the permanent rule is not added twice; our own policy's are dropped."""
    permanent = LIST_ALL_ZONES.replace('\trule family="ipv4" source address="203.0.113.55" reject\n', '')
    policies = ('tw-egress (active)\n  rich rules: \n\trule priority="32767" reject\n'
                'mine\n  rich rules: \n\trule family="ipv4" destination address="203.0.113.9" drop\n')
    answers = {('firewall-cmd', '--list-all-zones'): LIST_ALL_ZONES, ('firewall-cmd', '--permanent', '--list-all-zones'): permanent,
               ('firewall-cmd', '--list-all-policies'): policies,
               ('firewall-cmd', '--permanent', '--list-all-policies'): 'tw-egress\n  rich rules: \nmine\n  rich rules: \n'}
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, answers.get(tuple(argv), 'success\n')
    assert egress_revert.listed_rich_rules(LIST_ALL_ZONES)['public'] == [
        'rule family="ipv4" source address="203.0.113.55" reject',
        'rule family="ipv4" source address="203.0.113.7" port port="8080" protocol="tcp" accept']
    rc, message = egress_revert.firewalld_reload(run, 'tw-egress')
    assert rc == 0 and message == 'reloaded, keeping 2 runtime-only rich rule(s) of other tools'
    assert calls[4:] == [['firewall-cmd', '--reload'],
                         ['firewall-cmd', '--zone=public', '--add-rich-rule=rule family="ipv4" source address="203.0.113.55" reject'],
                         ['firewall-cmd', '--policy=mine', '--add-rich-rule=rule family="ipv4" destination address="203.0.113.9" drop']]


@pytest.mark.parametrize('status, reload_rc, expected', [
    ('full', 0, 'Rolled back: the firewall is as before this run'),
    ('partial', 1, 'ROLLBACK INCOMPLETE: files restored, but x failed (rc=1)'),
])
def test_a_restore_returns_a_typed_outcome_and_only_a_full_one_says_as_before(root, status, reload_rc, expected):
    path = write_record(root, {'files': {os.path.join(root, 'rules'): 'older\n'}})
    outcome = egress_revert.restore(path, {'files': [os.path.join(root, 'rules')], 'reload': [['x']]},
                                    lambda argv: (reload_rc, 'said %s' % argv[0]))
    assert outcome.status == status and outcome.notes == ()
    assert outcome.problems == (() if status == 'full' else ('x failed (rc=1): said x',))
    assert os.path.exists(path) is (status != 'full')  # a partial restore keeps its record, for the next attempt
    text = tx.outcome_text(outcome)
    assert text.startswith(expected) and ('as before' in text) is (status == 'full')


def test_no_record_and_an_unwritable_file_are_outcomes_too(root):
    missing = os.path.join(root, 'none.json')
    assert egress_revert.restore(missing, {}).status == egress_revert.NOTHING
    assert 'as before' not in tx.outcome_text(egress_revert.restore(missing, {}))
    blocked = os.path.join(root, 'blocked')
    os.mkdir(blocked)  # a directory where the file goes: it cannot be written
    path = write_record(root, {'files': {blocked: 'older\n'}})
    outcome = egress_revert.restore(path, {'files': [blocked], 'reload': []})
    assert outcome.status == egress_revert.FAILED and os.path.exists(path)
    assert tx.outcome_text(outcome, retries=True).startswith('ROLLBACK INCOMPLETE: restore failed (')
    assert tx.outcome_text(outcome, retries=True).endswith('(the dead-man revert retries at its deadline)')


def test_the_boot_check_restores_the_files_the_modules_write(tmp_path):
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import nftables_rules, ufw_apply
    root = str(tmp_path)
    ufw = ufw_apply.UfwPaths('tw', root=root)
    assert egress_revert.boot_spec('ufw', 'tw', {}, root) == {'files': ufw.files(), 'shared': ufw.shared(), 'reload': []}
    assert ufw.pending == os.path.join(root, dict(egress_revert.BOOT_RECORDS)['ufw'])
    nft = nftables_rules.paths('tw', os.path.join(root, 'etc/nftables.d'), os.path.join(root, 'etc/systemd/system'))
    assert egress_revert.boot_spec('nftables', 'tw', {}, root)['files'] == [nft.ruleset, nft.unit, nft.dropin]
    assert nft.record == os.path.join(root, dict(egress_revert.BOOT_RECORDS)['nftables'])
    assert nftables_rules.CONFIG_DIR == '/etc/nftables.d' and nft.ruleset.endswith('/etc/nftables.d/tw-egress.nft')
    # firewalld's: the files of the names firewalld_policy gives (and firewalld's .old backups), nobody else's.
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import firewalld_policy
    ours = ['policies/%s.xml' % firewalld_policy.policy_name('tw'),
            'ipsets/%s.xml' % firewalld_policy.ipset_name('tw', 'tunnel', 'ipv4', 'udp', 7844),
            'ipsets/%s.xml.old' % firewalld_policy.ipset_name('tw', 'dns', 'ipv6')]
    others = ['policies/tw2-egress.xml', 'ipsets/tw-Tunnel-v4.xml', 'ipsets/other-tunnel-v4.xml', 'zones/tw-egress.xml']
    record = {'files': [os.path.join(root, 'etc/firewalld', f) for f in ours + others]}
    assert egress_revert.boot_spec('firewalld', 'tw', record, root)['files'] == record['files'][:len(ours)]
    assert all(firewalld_policy.owned_file('tw', os.path.basename(f)) for f in ours)
    assert not any(firewalld_policy.owned_file('tw', os.path.basename(f)) for f in others[:3])
