# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Put a host's firewall back as it was before a change that was never confirmed: the dead-man revert.

One code path, used three ways:

- imported by egress_transaction, to restore at once (the verification failed, or a previous run died before it
  confirmed and its revert has not fired yet);
- as a program of its own (``python -I revert.py``): the transaction writes this file's source next to the host-wide
  lock and starts it, from a transient systemd timer or as a detached process in its own session, with the pending
  record's path and id and the restore's *spec* (the files it may write and the commands that reload them, built by
  the module from its backend). It waits until the record's deadline, takes the host-wide lock (so it never runs
  while a transaction is under way) and restores - unless the record is gone (confirmed) or belongs to another run;
- at boot (``revert.py --boot``, from a oneshot unit ordered before ufw, nftables and firewalld): a record left by a
  run that a reboot ended can never be confirmed, so its files are put back before the firewall loads them.

The pending record is a JSON file: the previous content of every file the change may touch (``None``: the file did
not exist) and - once the change is applied - what the change left in them. Only the spec says which files may be
written and what runs: a record names no command, and a file it names outside the spec is ignored. The record is
trusted only if it is ours: a regular file (no symlink), owned by this user (root), not writable by group or
others, in a directory that is the same.

Undo what we own, keep what others wrote: a file the module owns outright (its nftables table, firewalld objects) is
put back whole. A file shared with other writers (ufw's user.rules, /etc/default/ufw) gets a three-way merge: the
lines the change made go back to what they were, lines someone else changed since the change (fail2ban's
``ufw insert 1 deny``, an admin's ``ufw allow``) stay. Where the other writer's change overlaps ours the file is put
back whole (the host's way out comes first) and the message says whose lines were lost. A record is removed only once
its restore completed: a failed reload keeps it, for the dead-man's next attempt, the next run and the boot check.

Standard library only, no Ansible import: it must run when the module, its payload and the controller are gone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import difflib
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time

POLL_SECONDS = 0.5
# The dead-man waits this long for the host-wide lock (a transaction holding it restores the record first anyway).
LOCK_WAIT_SECONDS = 300
# A restore whose reload failed is tried again this often by the dead-man before it leaves it to the next run.
RETRY_SECONDS = 10
RETRIES = 6
BOOT_ID = '/proc/sys/kernel/random/boot_id'
# The pending record's file name, in the directory of the firewall's own files (a reboot keeps it as it keeps them).
RECORD_NAME = 'tunnelwall-pending.json'
# Where the Linux backends keep the files a change writes, below / (NAME for %s): the modules write them there
# (ufw_apply, nftables_rules.paths) and the boot check (boot_spec) restores them.
UFW_RULES = {'ipv4': 'etc/ufw/user.rules', 'ipv6': 'etc/ufw/user6.rules'}
UFW_DEFAULTS = 'etc/default/ufw'
UFW_AFTER = ('etc/ufw/after.rules', 'etc/ufw/after6.rules')  # `ufw default` rewrites their log prefixes
UFW_SHARED = (UFW_RULES['ipv4'], UFW_RULES['ipv6'], UFW_DEFAULTS) + UFW_AFTER  # every ufw user writes these
UFW_STATE = 'etc/ufw/%s-egress.json'
NFTABLES_DIR = 'etc/nftables.d'
NFTABLES_RULESET = '%s-egress.nft'  # in NFTABLES_DIR
NFTABLES_UNIT = 'tunnelwall-nftables-%s'  # NFTABLES_UNIT.service, and sysinit.target.d/NFTABLES_UNIT.conf
# firewalld's objects of NAME: the policy NAME-egress and the ipsets NAME-PURPOSE[-PROTOCOLPORT]-v4|v6
# (firewalld_policy names them; the boot check restores their files, policies/*.xml and ipsets/*.xml).
FIREWALLD_POLICY_SUFFIX = '-egress'
FIREWALLD_IPSET_PATTERN = r'%s-(?P<purpose>[a-z][a-z0-9_]*?)(-(tcp|udp)[0-9]{1,5})?-v[46]'  # % re.escape(NAME)
NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z')
# What a restore achieved (Outcome.status): the firewall as before the run (FULL), files back but the live firewall
# not (PARTIAL: a reload failed), no record (NOTHING), or files that could not be written (FAILED).
FULL, PARTIAL, NOTHING, FAILED = 'full', 'partial', 'nothing', 'failed'
# ``message``: the whole story, for a log; ``notes``: what other writers' lines became; ``problems``: what failed.
Outcome = collections.namedtuple('Outcome', 'status message notes problems')
# A restore spec's reload that egress_revert carries out itself: firewall-cmd --reload, keeping the rich rules other
# tools hold in firewalld's runtime only (fail2ban's firewallcmd-rich-rules, a hand-added runtime rule).
FIREWALLD_RELOAD = 'tunnelwall:firewalld-reload'


class UntrustedRecord(Exception):
    """A pending record (or its directory) that is not provably ours: never read, never acted on."""


def digest(text):
    """The SHA-256 hex digest of ``text`` (UTF-8), None for None (a missing file)."""
    return None if text is None else hashlib.sha256(text.encode('utf-8')).hexdigest()


def read_text(path):
    """A file's text, or None when it does not exist; any other error is raised."""
    try:
        with open(path, 'r') as handle:
            return handle.read()
    except (IOError, OSError) as error:
        if error.errno == errno.ENOENT:
            return None
        raise


def fsync_dir(path):
    """fsync the directory of ``path``, so a rename or removal in it survives a crash."""
    handle = os.open(os.path.dirname(path) or '.', os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_durably(path, text, mode=None):
    """Write through a temporary file, fsync it, rename it into place and fsync the directory.

    A file that is a mount point (a bind-mounted /etc/default/ufw) cannot be renamed onto: it is written in place.
    """
    if mode is None:
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    temporary = '%s.tunnelwall-%d' % (path, os.getpid())
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(handle, 'w') as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        try:
            os.rename(temporary, path)
        except OSError as error:
            if error.errno not in (errno.EBUSY, errno.EXDEV):
                raise
            with open(path, 'w') as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
        fsync_dir(path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def remove_durably(path):
    """Remove ``path`` if it exists and fsync its directory, so the removal survives a crash."""
    if os.path.lexists(path):
        os.unlink(path)
        fsync_dir(path)


def check_owned(path, directory=False):
    """Raise UntrustedRecord unless ``path`` is no symlink, owned by this user (root) and not group/other-writable."""
    try:
        info = os.lstat(path)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return False
        raise
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    problem = None
    if not kind(info.st_mode):
        problem = 'not a %s (a symlink?)' % ('directory' if directory else 'regular file')
    elif info.st_uid != os.geteuid():
        problem = 'owned by uid %d, not %d' % (info.st_uid, os.geteuid())
    elif info.st_mode & 0o022:
        problem = 'writable by group or others (mode %o)' % (info.st_mode & 0o7777)
    if problem:
        raise UntrustedRecord('%s: %s; it is not trusted and nothing was done with it' % (path, problem))
    return True


def boot_id():
    """This boot's id (the kernel's random boot_id), or None where it cannot be read."""
    try:
        with open(BOOT_ID) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


def read_record(path):
    """The pending record, or None when there is none (or it is not one of ours, which is then left alone).

    Raises UntrustedRecord when the file or its directory could have been written by someone else than root.
    """
    check_owned(os.path.dirname(path) or '.', directory=True)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return None
        if error.errno == errno.ELOOP:
            raise UntrustedRecord('%s: a symlink; it is not trusted and nothing was done with it' % path)
        raise
    info = os.fstat(handle)  # before reading: a directory opens too, and only reading it fails
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        os.close(handle)
        raise UntrustedRecord('%s: not a regular file of uid %d without group/other write (uid %d, mode %o); it is '
                              'not trusted and nothing was done with it'
                              % (path, os.geteuid(), info.st_uid, info.st_mode & 0o7777))
    with os.fdopen(handle, 'r') as stream:
        text = stream.read()
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get('files'), dict) or 'id' not in record:
        return None
    return record


def merge(original, applied, current):
    """Three-way merge of one file's text: ``current`` with the change (``original`` -> ``applied``) taken back.

    Lines someone else changed since the change stay; the lines the change made go back to ``original``. Returns the
    merged text (None: no file); raises ValueError when the other writer changed lines inside ours (a conflict).
    """
    if current == applied or current == original:
        return original
    if original is None or applied is None or current is None:
        raise ValueError('the file was created or removed by both')
    ours, theirs, base = applied.splitlines(True), current.splitlines(True), original.splitlines(True)
    mapped = {}  # line of ``applied`` -> the same line in ``original`` (lines the change did not touch)
    for a, b, size in difflib.SequenceMatcher(None, ours, base, autojunk=False).get_matching_blocks():
        for k in range(size):
            mapped[a + k] = b + k
    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_opcodes():
        if tag == 'equal':
            continue
        if i1 == i2:  # an insertion: anchored before an untouched line, or after one
            if i1 in mapped:
                at = mapped[i1]
            elif i1 - 1 in mapped:
                at = mapped[i1 - 1] + 1
            elif i1 == 0 or i1 == len(ours):
                at = 0 if i1 == 0 else len(base)
            else:
                raise ValueError('an insertion inside the lines of the change')
            edits.append((at, at, theirs[j1:j2]))
            continue
        span = [mapped.get(i) for i in range(i1, i2)]
        if None in span or span[-1] - span[0] != i2 - 1 - i1:
            raise ValueError('a change of a line the change made')
        edits.append((span[0], span[-1] + 1, theirs[j1:j2]))
    for start, end, lines in sorted(edits, reverse=True):
        base[start:end] = lines
    return ''.join(base)


def targets(record, spec):
    """({path: text to put back (None: remove)}, notes) for a pending record, within ``spec`` (see restore()).

    A file the module owns is put back whole; a shared one gets the three-way merge, keeping other writers' lines.
    """
    allowed = set(spec.get('files') or [])
    shared = set(spec.get('shared') or [])
    applied = record.get('applied') if isinstance(record.get('applied'), dict) else None
    wanted, notes = {}, []
    for path in sorted(allowed):
        if path not in record['files']:
            continue
        text = record['files'][path]
        wanted[path] = text
        if path in shared and applied is not None and path in applied:
            current = read_text(path)
            try:
                wanted[path] = merge(text, applied[path], current)
                if current not in (applied[path], text):
                    notes.append('%s: kept what another writer changed since this run' % path)
            except ValueError:
                notes.append('%s: another writer changed lines next to this run\'s own, so the file was put back '
                             'whole and their change there is lost' % path)
    ignored = sorted(path for path in record['files'] if path not in allowed)
    if ignored:
        notes.append('ignored %s: not a file of this backend' % ', '.join(ignored))
    return wanted, notes


def restore(record_path, spec, run=None, reload=True, done=None):
    """Restore what the pending record at ``record_path`` describes, within ``spec``; the caller holds the lock.

    ``spec``: {'files': paths the restore may write, 'shared': those of them other programs write too (merged, not
    replaced), 'reload': argv lists that load the files into the live firewall} - built from the backend, never read
    from the record. ``run(argv)`` -> (rc, output) runs a reload command (subprocess by default); ``reload=False``
    (at boot) only puts the files back, for the firewall's own start to load. ``done(message)`` is called just before
    the record of a complete restore is removed (the dead-man's log: once the record is gone, the log says why).

    Returns an Outcome: FULL (the record is removed), PARTIAL (files back, a reload failed: the record stays, so the
    dead-man, the next run and the boot check try again), NOTHING (no record) or FAILED (a file could not be written;
    the record stays). UntrustedRecord for a record that is not provably ours.
    """
    record = read_record(record_path)
    if record is None:
        return Outcome(NOTHING, 'nothing to restore', (), ())
    try:
        wanted, notes = targets(record, spec)
        for path, target in sorted(wanted.items()):
            if read_text(path) == target:
                continue
            if target is None:
                remove_durably(path)
            else:
                write_durably(path, target)
    except (IOError, OSError) as error:
        return Outcome(FAILED, 'restore failed (%s); the pending record %s stays' % (error, record_path), (), (str(error),))
    problems = []
    for argv in (spec.get('reload') or []) if reload else []:
        try:
            if argv[0] == FIREWALLD_RELOAD:
                rc, output = firewalld_reload(run or _run, argv[1] if len(argv) > 1 else None)
            else:
                rc, output = (run or _run)(argv)
        except OSError as error:  # a reload that cannot start is a failed reload, not the end of the restore
            rc, output = 127, str(error)
        if rc != 0:
            problems.append('%s failed (rc=%s): %s' % (' '.join(argv), rc, output.strip()))
    if problems:
        return Outcome(PARTIAL, 'files restored, but %s; the pending record %s stays, so the restore is tried again (by '
                                'the dead-man, the next run and at boot)' % ('; '.join(problems), record_path),
                       tuple(notes), tuple(problems))
    message = 'restored the state before run %s (%s)' % (record['id'], ', '.join(sorted(wanted)))
    message += ''.join('; ' + note for note in notes)
    if done:
        done(message)
    remove_durably(record_path)
    return Outcome(FULL, message, tuple(notes), ())


def listed_rich_rules(text):
    """``firewall-cmd [--permanent] --list-all-zones`` (or ``--list-all-policies``) -> {name: [rich rules]}."""
    found, name, in_rules = {}, None, False
    for line in text.splitlines():
        if line.strip() and not line[0].isspace():
            name, in_rules = line.split()[0], False
            found.setdefault(name, [])
        elif line.strip().startswith('rich rules:'):
            in_rules = True
        elif in_rules and line.startswith('\t') and line.strip() and name is not None:
            found[name].append(line.strip())
        elif line.strip():
            in_rules = False
    return found


def firewalld_reload(run, own_policy=None):
    """``firewall-cmd --reload`` that keeps the rich rules other tools added to firewalld's runtime only.

    A reload makes the runtime the permanent configuration again, dropping every runtime-only rule - fail2ban's bans,
    a rule added by hand. The rich rules of each zone and policy (but ``own_policy``, whose runtime-only rules are the
    change being undone) that the permanent configuration lacks are listed first and added back after the reload.
    Returns (rc, output) as ``run`` does.
    """
    kept = []
    for kind, option in (('zones', '--zone='), ('policies', '--policy=')):
        rc, runtime = run(['firewall-cmd', '--list-all-' + kind])
        rc_permanent, permanent = run(['firewall-cmd', '--permanent', '--list-all-' + kind])
        if rc or rc_permanent:
            continue  # a firewalld without policies: nothing of that kind to keep
        permanent = listed_rich_rules(permanent)
        for name, rules in sorted(listed_rich_rules(runtime).items()):
            extra = [r for r in rules if r not in permanent.get(name, [])]
            if extra and not (kind == 'policies' and name == own_policy):
                kept.append((option + name, extra))
    rc, output = run(['firewall-cmd', '--reload'])
    if rc:
        return rc, output
    problems = []
    for option, rules in kept:
        rc, output = run(['firewall-cmd', option] + ['--add-rich-rule=' + rule for rule in rules])
        if rc:
            problems.append('putting back runtime rule(s) of %s failed: %s' % (option[2:], output.strip()))
    if problems:
        return 1, '; '.join(problems)
    return 0, 'reloaded, keeping %d runtime-only rich rule(s) of other tools' % sum(len(r) for dummy, r in kept)


def _run(argv):
    try:
        # This also runs as a program of its own, with no AnsibleModule and so no run_command.
        process = subprocess.Popen(  # pylint: disable=ansible-bad-function
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, LANG='C', LC_ALL='C'))
        output = process.communicate()[0]
    except OSError as error:
        return 127, str(error)
    return process.returncode, output.decode('utf-8', 'replace')


def lock(lock_path, timeout=LOCK_WAIT_SECONDS):
    """The host-wide lock, waited for up to ``timeout`` seconds; None when it stays held (the holder, a transaction,
    restores this record first itself)."""
    check_owned(os.path.dirname(lock_path), directory=True)
    handle = os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600), 'a')
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except (IOError, OSError) as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if time.time() >= deadline:
                handle.close()
                return None
            time.sleep(POLL_SECONDS)


def _log(log_path, record_id, message):
    if log_path:
        with open(log_path, 'a') as log:
            log.write('%s dead-man revert of %s: %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), record_id,
                                                          message))


def wait_and_restore(record_path, record_id, lock_path, log_path, spec, retries=RETRIES, retry_seconds=RETRY_SECONDS):
    """The dead-man: sleep until the record's deadline, then restore it if it is still this transaction's.

    A restore that did not complete (a reload failed) is tried again ``retries`` times, ``retry_seconds`` apart.
    """
    try:
        while True:
            record = read_record(record_path)
            if record is None or record['id'] != record_id:
                return 0  # confirmed, or already restored
            if time.time() >= record.get('deadline', 0):
                break
            time.sleep(POLL_SECONDS)
        for attempt in range(retries + 1):
            handle = lock(lock_path)
            if handle is None:
                _log(log_path, record_id, 'the host-wide lock %s stayed held for %ds; the run holding it restores the '
                     'record first' % (lock_path, LOCK_WAIT_SECONDS))
                return 1
            try:
                record = read_record(record_path)
                if record is None or record['id'] != record_id:
                    return 0
                # A file that cannot be written (FAILED) is tried again like a failed reload (PARTIAL).
                outcome = restore(record_path, spec, done=lambda text: _log(log_path, record_id, text))
            finally:
                handle.close()
            if outcome.status in (FULL, NOTHING):
                return 0
            _log(log_path, record_id, outcome.message)
            if attempt < retries:
                time.sleep(retry_seconds)
        return 1
    except UntrustedRecord as error:
        _log(log_path, record_id, str(error))
        return 1


# The pending records the boot check looks for, and the files each backend may restore: rebuilt here from the
# backend's own layout (the record's own ``files`` only give the previous contents).
def boot_spec(backend, name, record, root='/'):
    """The spec of a record found at boot: the files of ``backend`` for ``name``; no reload (the firewall's own start,
    ordered after the boot check, loads the files)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        return None

    def at(*parts):
        """``parts`` joined below ``root``."""
        return os.path.join(root, *parts)
    if backend == 'ufw':
        shared = [at(path) for path in UFW_SHARED]
        return {'files': shared + [at(UFW_STATE % name)], 'shared': shared, 'reload': []}
    if backend == 'nftables':
        unit = NFTABLES_UNIT % name
        return {'files': [at(NFTABLES_DIR, NFTABLES_RULESET % name), at('etc/systemd/system/%s.service' % unit),
                          at('etc/systemd/system/sysinit.target.d/%s.conf' % unit)], 'shared': [], 'reload': []}
    if backend == 'firewalld':
        owned = re.compile(r'%s(policies/%s|ipsets/%s)\.xml(\.old)?\Z' % (
            re.escape(at('etc/firewalld/')), re.escape(name + FIREWALLD_POLICY_SUFFIX),
            FIREWALLD_IPSET_PATTERN % re.escape(name)))
        return {'files': [path for path in record['files'] if owned.match(path)], 'shared': [], 'reload': []}
    return None


BOOT_RECORDS = tuple((backend, '%s/%s' % (directory, RECORD_NAME)) for backend, directory in (
    ('ufw', 'etc/ufw'), ('nftables', NFTABLES_DIR), ('firewalld', 'etc/firewalld')))


def boot(root='/', log_path=None):
    """At boot: restore every pending record left by an earlier boot, or whose deadline passed. Returns an exit code."""
    failed = 0
    for backend, relative in BOOT_RECORDS:
        path = os.path.join(root, relative)
        try:
            record = read_record(path)
            if record is None:
                continue
            if record.get('boot_id') == boot_id() and time.time() < record.get('deadline', 0):
                # This boot's run, still within its confirm_timeout: its own dead-man decides.
                sys.stderr.write('tunnelwall boot check: %s: run %s of this boot, within its confirm_timeout: left '
                                 'to its dead-man revert\n' % (path, record['id']))
                continue
            spec = boot_spec(record.get('backend'), record.get('name'), record, root)
            if spec is None:
                raise UntrustedRecord('%s: backend %r, name %r: not a record of this collection' % (
                    path, record.get('backend'), record.get('name')))
            outcome = restore(path, spec, reload=False)
        except (UntrustedRecord, IOError, OSError) as error:
            outcome = Outcome(FAILED, str(error), (), (str(error),))
        if log_path:
            _log(log_path, 'boot check', '%s: %s' % (path, outcome.message))
        sys.stderr.write('tunnelwall boot check: %s: %s\n' % (path, outcome.message))
        failed += 0 if outcome.status == FULL else 1
    return 1 if failed else 0


def main(argv):
    """``revert.py RECORD ID LOCK LOG SPEC`` (see wait_and_restore; SPEC is JSON) or ``revert.py --boot [ROOT]``."""
    if len(argv) in (2, 3) and argv[1] == '--boot':
        return boot(argv[2] if len(argv) == 3 else '/')
    if len(argv) != 6:
        sys.stderr.write('usage: revert.py RECORD ID LOCK LOG SPEC | revert.py --boot [ROOT]\n')
        return 2
    try:
        spec = json.loads(argv[5])
    except ValueError:
        sys.stderr.write('revert.py: SPEC is not JSON\n')
        return 2
    return wait_and_restore(argv[1], argv[2], argv[3], argv[4] or None, spec)


if __name__ == '__main__':
    sys.exit(main(sys.argv))  # pylint: disable=ansible-bad-function  # a program, not a module: no exit_json
