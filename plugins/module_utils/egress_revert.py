# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Put a host's firewall back as it was before a change that was never confirmed: the dead-man revert.

One code path, used two ways:

- imported by egress_transaction, to restore at once (the verification failed, or a previous run died before it
  confirmed and its revert has not fired yet);
- as a program of its own: the transaction writes this file's source next to the host-wide lock and starts it, from
  a transient systemd timer or as a detached process in its own session, with the pending record's path and id. It
  waits until the record's deadline, takes the host-wide lock (so it never runs while a transaction is under way)
  and restores - unless the record is gone (confirmed) or belongs to another transaction.

The pending record is a JSON file: the previous content of every file the change may touch (``None``: the file did
not exist), the commands that load those files into the live firewall, and - once the change is applied - the
digests of what it left. A file that no longer matches those digests was changed by someone else since: the revert
then restores nothing, so it never undoes a later change it did not make.

Standard library only, no Ansible import: it must run when the module, its payload and the controller are gone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time

POLL_SECONDS = 0.5


def digest(text):
    return None if text is None else hashlib.sha256(text.encode('utf-8')).hexdigest()


def read_text(path):
    try:
        with open(path, 'r') as handle:
            return handle.read()
    except (IOError, OSError) as error:
        if error.errno == errno.ENOENT:
            return None
        raise


def fsync_dir(path):
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
    if os.path.lexists(path):
        os.unlink(path)
        fsync_dir(path)


def read_record(path):
    """The pending record, or None when there is none (or it is not one of ours, which is then left alone)."""
    text = read_text(path)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get('files'), dict) or 'id' not in record:
        return None
    return record


def restore(record_path, run=None):
    """Restore what the pending record at ``record_path`` describes; the caller holds the host-wide lock.

    Returns (restored, message). ``run(argv)`` -> (rc, output) runs a reload command (subprocess by default).
    The record is removed in every case where it has been dealt with, so a revert never runs twice.
    """
    record = read_record(record_path)
    if record is None:
        return False, 'nothing to restore'
    applied = record.get('applied')
    current = dict((path, read_text(path)) for path in record['files'])
    if applied:
        touched = sorted(path for path in record['files'] if digest(current[path]) != applied.get(path))
        if touched:
            remove_durably(record_path)
            return False, ('not restored: %s changed after the change of run %s, by something else; restoring would '
                           'undo that too' % (', '.join(touched), record['id']))
    for path, text in sorted(record['files'].items()):
        if current[path] == text:
            continue
        if text is None:
            remove_durably(path)
        else:
            write_durably(path, text)
    problems = []
    for argv in record.get('reload') or []:
        try:
            rc, output = (run or _run)(argv)
        except OSError as error:  # a reload that cannot start is a failed reload, not the end of the restore
            rc, output = 127, str(error)
        if rc != 0:
            problems.append('%s failed (rc=%s): %s' % (' '.join(argv), rc, output.strip()))
    remove_durably(record_path)
    if problems:
        return True, 'files restored, but %s' % '; '.join(problems)
    return True, 'restored the state before run %s (%s)' % (record['id'], ', '.join(sorted(record['files'])))


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


def lock(lock_path):
    """The host-wide lock, waited for without limit (the transaction holding it ends, or its process dies)."""
    handle = open(lock_path, 'a')
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def wait_and_restore(record_path, record_id, lock_path, log_path=None):
    """The dead-man: sleep until the record's deadline, then restore it if it is still this transaction's."""
    while True:
        record = read_record(record_path)
        if record is None or record['id'] != record_id:
            return 0  # confirmed, or already restored
        if time.time() >= record.get('deadline', 0):
            break
        time.sleep(POLL_SECONDS)
    handle = lock(lock_path)
    try:
        record = read_record(record_path)
        if record is None or record['id'] != record_id:
            return 0
        restored, message = restore(record_path)
    finally:
        handle.close()
    if log_path:
        with open(log_path, 'a') as log:
            log.write('%s dead-man revert of %s: %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), record_id, message))
    return 0 if restored else 1


def main(argv):
    """``revert.py RECORD ID LOCK [LOG]``: see wait_and_restore."""
    if len(argv) not in (4, 5):
        sys.stderr.write('usage: revert.py RECORD ID LOCK [LOG]\n')
        return 2
    return wait_and_restore(argv[1], argv[2], argv[3], argv[4] if len(argv) == 5 else None)


if __name__ == '__main__':
    sys.exit(main(sys.argv))  # pylint: disable=ansible-bad-function  # a program, not a module: no exit_json
