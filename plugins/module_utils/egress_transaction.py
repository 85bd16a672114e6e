# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The egress change as one transaction on the host: lock, record, arm, apply, verify, commit or restore.

``run()`` takes a backend (firewalld, ufw, nftables) that can plan, apply and commit a change of its firewall, and
does, in one process and under one host-wide lock - the only rollback there is, the backends never restore:

1. settle what a previous run left pending (it died before confirming): restore it now;
2. plan; in check mode, or with nothing to change and nothing to verify, stop there;
3. record the previous content of every file the change may touch, durably (fsync), *before* the first change;
4. arm the dead-man revert: a transient systemd timer where systemd runs the host, else a detached process in its
   own session; either runs egress_revert after ``confirm_timeout`` seconds unless the record is gone by then. Where
   /etc/systemd/system exists a oneshot unit also runs egress_revert at boot, before ufw, nftables and firewalld
   load their files: a reboot before the confirmation ends the timer and the process, never the record;
5. apply; verify from this host with the probe code; on success commit (firewalld: make it permanent), remove the
   record and cancel the timer - the confirmation; on any failure restore at once with the same code the dead-man uses.
   The confirmed record is kept in /run as the last change of its backend and name, which ``revert_last()``
   (state=reverted) restores.

A SIGKILL of this process, of ansible-playbook or of the SSH connection at any point after 3. leaves the record
behind: the dead-man restores it within ``confirm_timeout`` seconds, the next run restores it first, and a reboot
restores it at boot. The record lives next to the firewall's files (/etc), so it survives a reboot as they do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_revert

RUN_DIR = '/run/tunnelwall'
LOCK_NAME = 'egress.lock'
PROGRAM_NAME = 'revert.py'
LOG_NAME = 'revert.log'
UNIT_PREFIX = 'tunnelwall-revert-'
# The boot check: a persistent copy of the revert program and the unit that runs it.
BOOT_DIR = '/etc/tunnelwall'
SYSTEMD_DIR = '/etc/systemd/system'
BOOT_UNIT = 'tunnelwall-boot-revert.service'


class EgressError(Exception):
    """A failure of an egress change, with a message for the user; ``details`` go into the module's result.

    The one error of the Linux backends (firewalld_client, ufw_apply, nftables_apply) and their transaction.
    """

    def __init__(self, message, **details):
        super(EgressError, self).__init__(message)
        self.details = details


class Restored(EgressError):
    """A failure whose restore has run already (a failed verification): raised as it is."""


class HostLock(object):
    """The host-wide lock of every egress transaction, whatever the backend or name; says who holds it."""

    def __init__(self, run_dir, timeout, holder):
        self.path = os.path.join(run_dir, LOCK_NAME)
        self.timeout = timeout
        self.holder = holder
        self.handle = None

    def __enter__(self):
        if not os.path.isdir(os.path.dirname(self.path)):
            os.makedirs(os.path.dirname(self.path), 0o700)
        try:
            egress_revert.check_owned(os.path.dirname(self.path), directory=True)
            self.handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600), 'a+')
        except (egress_revert.UntrustedRecord, OSError) as error:
            raise EgressError('cannot take the host-wide lock %s (%s); changed nothing' % (self.path, error))
        deadline = time.time() + self.timeout
        waited = False
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.time() >= deadline:
                    self.handle.seek(0)
                    holder = self.handle.read().strip() or 'unknown'
                    self.handle.close()
                    raise EgressError('another egress change holds the host-wide lock %s (%s); waited %ds '
                                      '(lock_timeout) and changed nothing' % (self.path, holder, self.timeout))
                waited = True
                time.sleep(0.1)
        self.waited = waited
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write('pid %d, %s, since %s\n' % (os.getpid(), self.holder, time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())))
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.close()  # closing releases the lock


def revert_source():
    """egress_revert's own source, to be written on the host as a program that outlives this process."""
    loader = getattr(egress_revert, '__loader__', None)
    source = None
    if loader is not None and hasattr(loader, 'get_source'):
        try:
            source = loader.get_source(egress_revert.__name__)
        except (ImportError, IOError, OSError):
            source = None
    if source is None:
        with open(egress_revert.__file__.replace('.pyc', '.py')) as handle:
            source = handle.read()
    # Ansible's collection loader gives bytes, zipimport (AnsiballZ) and the file loader text.
    return source.decode('utf-8') if isinstance(source, bytes) else source


def systemd_booted():
    """True where systemd is PID 1 (sd_booted's test)."""
    return os.path.isdir('/run/systemd/system')


def systemd_running(which):
    """True where systemd is PID 1 and systemd-run is installed."""
    return systemd_booted() and which('systemd-run') is not None


def spec_of(backend, record=None):
    """What a restore of ``backend``'s record may write and run, rebuilt from the backend (never read from a record).

    ``record``: a pending record an earlier run left (a backend with ``spec_for`` rebuilds the files of its name).
    """
    if record is not None and hasattr(backend, 'spec_for'):
        return backend.spec_for(record)
    return {'files': sorted(backend.files()), 'shared': sorted(getattr(backend, 'shared_files', lambda: [])()),
            'reload': backend.reload_commands()}


def boot_unit_text(python, program):
    """The oneshot unit that restores, at boot, a record a reboot left pending - before the firewalls load their files.

    Our nftables units are ordered after it (nftables_rules.unit_text). Nothing on stop.
    """
    return '\n'.join([
        '# Written by tunnelwall.cloudflared (egress_transaction): the boot check of the dead-man revert.',
        '[Unit]',
        'Description=tunnelwall: restore a firewall change a reboot left unconfirmed',
        'DefaultDependencies=no',
        'After=local-fs.target',
        'Before=ufw.service nftables.service firewalld.service network-pre.target shutdown.target',
        'Wants=network-pre.target',
        'Conflicts=shutdown.target',
        'ConditionPathExists=%s' % program,
        '',
        '[Service]',
        'Type=oneshot',
        'RemainAfterExit=yes',
        'ExecStart=%s -I %s --boot' % (python, program),
        ''])


def install_boot_check(python, boot_dir=BOOT_DIR, systemd_dir=SYSTEMD_DIR):
    """Write the boot check (program, unit and the drop-in that has sysinit.target want it) where systemd's
    directory exists; returns the unit's path, or None on a host without /etc/systemd/system. Idempotent."""
    if not os.path.isdir(systemd_dir):
        return None
    program = os.path.join(boot_dir, PROGRAM_NAME)
    unit = os.path.join(systemd_dir, BOOT_UNIT)
    dropin = os.path.join(systemd_dir, 'sysinit.target.d', BOOT_UNIT[:-len('.service')] + '.conf')
    wanted = ((program, revert_source(), 0o700), (unit, boot_unit_text(python, program), 0o644),
              (dropin, '# Written by tunnelwall.cloudflared.\n[Unit]\nWants=%s\n' % BOOT_UNIT, 0o644))
    for path, text, mode in wanted:
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), 0o755)
        if egress_revert.read_text(path) != text:
            egress_revert.write_durably(path, text, mode)
    return unit


class DeadMan(object):
    """Arms and cancels the revert of one pending record."""

    def __init__(self, run_dir, record_path, record_id, timeout, python, which, run, spec):
        self.spec = spec
        self.run_dir = run_dir
        self.record_path = record_path
        self.record_id = record_id
        self.timeout = timeout
        self.python = python
        self.which = which
        self.run = run
        self.how = None
        self.unit = UNIT_PREFIX + record_id
        self.pid = None

    def argv(self):
        """The revert's command line: egress_revert's source written (durably) to run_dir as a program, run with this
        record, lock, log and spec."""
        program = os.path.join(self.run_dir, PROGRAM_NAME)
        egress_revert.write_durably(program, revert_source(), 0o700)
        # -I: no PYTHONPATH, no user site, not the program's own directory first on sys.path.
        return [self.python, '-I', program, self.record_path, self.record_id, os.path.join(self.run_dir, LOCK_NAME),
                os.path.join(self.run_dir, LOG_NAME), json.dumps(self.spec, sort_keys=True)]

    def arm(self):
        """Start the revert: a transient systemd timer where systemd runs the host, else a detached process in its own
        session; raise EgressError (nothing changed yet) when it cannot be armed so that it outlives the
        session."""
        if systemd_booted() and self.which('systemd-run') is None:
            # A process of ours would belong to this SSH session's scope, which logind may kill at logout.
            raise EgressError('systemd runs this host but systemd-run is missing, so the revert cannot outlive '
                              'the session; install systemd-run (package systemd) or set confirm_timeout=0')
        argv = self.argv()
        if systemd_running(self.which):
            rc, out, err = self.run([self.which('systemd-run'), '--unit=' + self.unit, '--collect', '--quiet',
                                     '--on-active=%ds' % self.timeout, '--timer-property=AccuracySec=1s',
                                     '--description=tunnelwall: restore the firewall unless the change is confirmed'] + argv)
            if rc == 0:
                self.how = 'systemd'
                return
            raise EgressError('cannot arm the revert with systemd-run (rc=%s): %s; nothing was changed' % (rc, (err or out).strip()))
        # No systemd: a process in its own session, detached from this one's stdio, survives this module, the SSH
        # session and the controller. It polls the record and ends by itself once the change is confirmed.
        # run_command waits for its child; this one must outlive the module, in a session of its own.
        process = subprocess.Popen(  # pylint: disable=ansible-bad-function
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, cwd='/', start_new_session=True)
        self.pid = process.pid
        self.how = 'process'

    def describe(self):
        """How the revert was armed (the record's ``armed``, the result's ``transaction``): systemd timer unit or process id."""
        return {'how': self.how, 'unit': self.unit + '.timer' if self.how == 'systemd' else None, 'pid': self.pid,
                'confirm_timeout': self.timeout}

    def cancel(self):
        """Stop the armed revert (module-level cancel)."""
        cancel(self.describe(), self.record_id, self.run, self.which)


def cancel(armed, record_id, run, which):
    """Stop the timer or the process of a record that is gone; harmless when it has ended already."""
    if not armed:
        return
    if armed.get('how') == 'systemd' and which('systemctl'):
        run([which('systemctl'), 'stop', armed['unit']])
    elif armed.get('pid'):
        pid = armed['pid']
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                mine = record_id.encode('ascii') in handle.read()
        except (IOError, OSError):
            mine = False
        if mine:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


def settle_pending(record_path, run, which, backend=None, spec=None):
    """Restore what a run that died left pending (we hold the lock, so it is not running) and cancel its revert.

    A restore that does not complete (or a record that is not provably ours) stops this run before it changes
    anything: it would otherwise record the half-restored state as the one to go back to.
    """
    try:
        record = egress_revert.read_record(record_path)
    except egress_revert.UntrustedRecord as error:
        raise EgressError('refusing the pending record of an earlier run: %s' % error)
    if record is None:
        return None
    if backend is not None:
        spec = spec_of(backend, record)
    outcome = egress_revert.restore(record_path, spec or {}, _runner(run))
    said = 'a previous run (%s, started %s) never confirmed its change: %s' % (
        record['id'], record.get('started', '?'), outcome.message)
    if outcome.status != egress_revert.FULL:
        raise EgressError('%s. This run changed nothing; fix what failed and run again (or remove %s to give up '
                          'the restore)' % (said, record_path))
    cancel(record.get('armed'), record['id'], run, which)
    return said


def _runner(run):
    """``run(argv)`` -> (rc, out, err) as egress_revert's (rc, output): what it printed, or why it failed."""
    def reload(argv):
        """Run ``argv``; (rc, stdout) on success, (rc, stderr or stdout) on failure."""
        rc, out, err = run(argv)
        return rc, ((out or '') if rc == 0 else (err or out or ''))
    return reload


class _Change(object):
    """The part of a transaction that has touched the host: its pending record, its dead-man, restore and confirm."""

    def __init__(self, backend, request, info, run_dir, python, which, command):
        self.backend = backend
        self.info = info
        self.command = command
        self.id = '%d-%d' % (int(time.time() * 1000), os.getpid())
        self.spec = spec_of(backend)
        self.record = {'id': self.id, 'backend': request.backend, 'name': request.name, 'pid': os.getpid(),
                       'boot_id': egress_revert.boot_id(), 'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                       'deadline': time.time() + request.confirm_timeout,
                       'files': dict((path, egress_revert.read_text(path)) for path in self.spec['files']),
                       'applied': None, 'armed': None}
        self.last_path = last_record(run_dir, request)
        self.deadman = DeadMan(run_dir, backend.record_path, self.id, request.confirm_timeout, python, which,
                               command, self.spec) if request.confirm_timeout else None

    def save(self):
        """Write the pending record durably (mode 0600): what the dead-man, the next run and the boot check restore from."""
        egress_revert.write_durably(self.backend.record_path, json.dumps(self.record), 0o600)

    def begin(self):
        """Record the state before the change, durably, then arm the dead-man revert; nothing is changed yet.

        The record of the last confirmed change (what state=reverted undoes) goes: this change replaces it.
        """
        try:
            egress_revert.remove_durably(self.last_path)
            if not os.path.isdir(os.path.dirname(self.backend.record_path)):
                # nftables' /etc/nftables.d may not exist yet; left behind by a restore (an empty directory).
                os.makedirs(os.path.dirname(self.backend.record_path), 0o755)
            self.save()
        except (IOError, OSError) as error:
            raise EgressError('cannot record the state before the change in %s (%s); nothing was changed'
                              % (self.backend.record_path, error))
        if self.deadman:
            try:
                self.deadman.arm()
            except (EgressError, OSError) as error:
                egress_revert.remove_durably(self.backend.record_path)
                raise EgressError('cannot arm the dead-man revert (%s); nothing was changed' % error)
            self.record['armed'] = self.info['armed'] = self.deadman.describe()
            self.save()

    def applied(self):
        """Remember what the change left: the revert takes back only that, and keeps later changes of others."""
        self.record['applied'] = dict((path, egress_revert.read_text(path)) for path in self.record['files'])
        self.save()

    def confirm(self):
        """The change holds: its record becomes the last confirmed change of this backend and name (state=reverted
        undoes it, until the next change or reboot), and the revert stops."""
        egress_revert.write_durably(self.last_path, json.dumps(self.record), 0o600)
        self.end()
        self.info['confirmed'] = True

    def end(self):
        """The record is gone (confirmed or restored): stop the revert."""
        if os.path.lexists(self.backend.record_path):
            egress_revert.remove_durably(self.backend.record_path)
        if self.deadman:
            self.deadman.cancel()

    def restore(self):
        """Restore now, with the dead-man's own code; the words for the module's message.

        The reload commands are the backend's now (after a failure it may know that nothing was loaded). An
        incomplete restore keeps the record and the dead-man: it tries again at its deadline, as do the next run and
        the boot check.
        """
        spec = dict(self.spec, reload=self.backend.reload_commands())
        try:
            outcome = egress_revert.restore(self.backend.record_path, spec, _runner(self.command))
        except egress_revert.UntrustedRecord as error:
            outcome = egress_revert.Outcome(egress_revert.FAILED, 'restore failed: %s' % error, (), (str(error),))
        self.info['restored'] = outcome.status == egress_revert.FULL
        self.info['restore_message'] = outcome.message
        if outcome.status == egress_revert.FULL:
            self.end()
        return outcome_text(outcome, retries=bool(self.deadman))

    def failed(self, error):
        """A failure while changing: restore, and the error to raise, with the outcome."""
        text = self.restore()
        details = dict(getattr(error, 'details', {}) or {}, transaction=self.info, rolled_back=self.info['restored'])
        return EgressError('%s. %s.' % (error, text), **details)


def outcome_text(outcome, retries=False):
    """A restore's Outcome in words for the module's message: "as before" only when it is."""
    if outcome.status == egress_revert.FULL:
        return 'Rolled back: the firewall is as before this run' + (
            ' (%s)' % '; '.join(outcome.notes) if outcome.notes else '')
    if outcome.status == egress_revert.NOTHING:
        return 'Nothing was restored: the pending record of this run is gone'
    retry = ' (the dead-man revert retries at its deadline)' if retries else ''
    return 'ROLLBACK INCOMPLETE: %s%s' % (outcome.message, retry)


def last_record(run_dir, request):
    """Where the last confirmed change of a backend and name is kept, for state=reverted (this boot only: /run)."""
    return os.path.join(run_dir, 'last-%s-%s.json' % (request.backend, request.name))


def transaction_info(request):
    """The ``transaction`` part of a module's result, before anything happened."""
    return {'confirm_timeout': request.confirm_timeout, 'armed': None, 'settled': None, 'restored': False}


@contextlib.contextmanager
def host_locked(request, record_path, info, command, which=None, run_dir=RUN_DIR, backend=None):
    """Hold the host-wide lock, restore first what a dead earlier run left pending in ``record_path``, then yield.

    Every change of a host's egress firewall goes through here - a transaction (run()) as well as an undo of the
    last one (revert_last(), state=reverted) - so that no two of them ever interleave, whatever their backend or name.
    """
    holder = 'tunnelwall %s egress change, name %s' % (request.backend, request.name)
    with HostLock(run_dir, request.lock_timeout, holder) as held:
        info['waited_for_lock'] = held.waited
        info['settled'] = settle_pending(record_path, command, which or shutil.which, backend)
        yield info


def run(backend, request, verify=None, check_mode=False, run_dir=RUN_DIR, python=None, which=None, command=None,
        boot_dirs=None):
    """One transaction; returns the backend's result with ``verification`` and ``transaction`` added.

    ``backend`` has ``record_path``, ``plan()`` -> result dict (with ``changed``), ``files()`` -> paths the change may
    write, ``reload_commands()``, ``apply()`` and ``commit()``; optionally ``shared_files()`` (files other programs
    write too: merged, not replaced, by a restore) and ``spec_for(name)``. ``verify()`` -> (ok, output, message) or
    None. ``command(argv)`` -> (rc, out, err) runs programs; ``which(name)`` finds them. ``boot_dirs``: (directory of
    the boot check's program, systemd's unit directory); by default /etc/tunnelwall and /etc/systemd/system when
    ``run_dir`` is the real one, else no boot check. Raises EgressError.
    """
    info = transaction_info(request)
    if check_mode:
        return dict(backend.plan(), verification=None, transaction=info)
    if boot_dirs is None and run_dir == RUN_DIR:
        boot_dirs = (BOOT_DIR, SYSTEMD_DIR)
    with host_locked(request, backend.record_path, info, command, which, run_dir, backend):
        result = dict(backend.plan(), transaction=info)
        if not result['changed']:
            return _verified(result, verify, None)
        if hasattr(verify, 'before_change'):  # origins.OriginCheck: each origin's connect before the change
            verify.before_change()
        change = _Change(backend, request, info, run_dir, python or sys.executable, which or shutil.which, command)
        if boot_dirs and request.confirm_timeout:
            try:
                info['boot_check'] = install_boot_check(python or sys.executable, *boot_dirs)
            except (IOError, OSError) as error:
                raise EgressError('cannot install the boot check of the dead-man revert (%s); nothing was changed'
                                  % error)
        change.begin()
        try:
            backend.apply()
            change.applied()
            result = _verified(result, verify, change)
            backend.commit()
        except Restored:
            raise
        except Exception as error:  # any failure of the change, the probe or the commit: restore, then report it
            raise change.failed(error)
        change.confirm()
        return result


def revert_last(backend, request, check_mode=False, run_dir=RUN_DIR, which=None, command=None):
    """state=reverted: undo the last confirmed change of this backend and name, with the restore of a failed run.

    Under the host-wide lock, after settling what a dead run left pending (as every transaction does); what other
    writers changed since stays (egress_revert's merge). Nothing recorded (no change since boot, or already
    reverted): changed=false. ``backend.compare(current, target)`` -> the module's result for a change of the
    backend's files from ``current`` to ``target`` (path -> text). Check mode takes no lock and writes nothing.
    """
    info = transaction_info(request)
    path = last_record(run_dir, request)

    def planned():
        """(spec, result): the backend's files now and as the last confirmed change's record would restore them, compared."""
        spec = spec_of(backend)
        try:
            record = egress_revert.read_record(path)
        except egress_revert.UntrustedRecord as error:
            raise EgressError('refusing the record of the last change: %s' % error)
        current = dict((name, egress_revert.read_text(name)) for name in spec['files'])
        target = dict(current)
        target.update(egress_revert.targets(record, spec)[0] if record else {})
        return spec, dict(backend.compare(current, target), transaction=info)
    if check_mode:
        return planned()[1]
    with host_locked(request, backend.record_path, info, command, which, run_dir, backend):
        spec, result = planned()
        outcome = egress_revert.restore(path, spec, _runner(command), reload=result['changed'])
        if outcome.status not in (egress_revert.FULL, egress_revert.NOTHING):
            # Some files may be back and others not: the firewall is neither as before this run nor as recorded.
            raise EgressError('state=reverted: %s' % outcome_text(outcome), transaction=info, rolled_back=False)
        return result


def _verified(result, verify, change):
    """Add the verification to ``result``; when it fails, restore (if a change was made) and raise."""
    if verify is None:
        result['verification'] = None
        return result
    ok, output, message = verify()
    result['verification'] = output
    if ok:
        return result
    if change is None:
        raise EgressError('verification failed - %s. Nothing was changed by this run.' % message,
                          verification=output, rolled_back=False, transaction=result['transaction'])
    outcome = change.restore()
    raise Restored('verification failed after applying the rules - %s. %s.' % (message, outcome),
                   verification=output, rolled_back=result['transaction']['restored'],
                   transaction=result['transaction'])
