# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small file cache of egress plans, shared by every forked worker.

Ansible templates a lookup once per host, in up to ``forks`` processes at
once. A per-key lock file makes the first worker resolve while the others
wait and then read its plan, so a fleet run sends one set of queries, not
one per host. Entries live no longer than the smallest DNS TTL of the plan,
and never longer than MAX_TTL.

A cached plan is applied to firewalls, so the cache trusts nothing it did
not write itself: the directory must be a real directory (not a symlink)
owned by the current user and writable by nobody else, entries and the lock
are opened without following symlinks and must be regular files of the
current user, and the key includes the user's uid and the machine's name, so
that a plan planted under a shared ANSIBLE_LOCAL_TEMP (say /tmp) by another
user or copied from another machine is never picked up. Anything else is
ignored with a warning and the plan is resolved afresh.
"""

from __future__ import annotations

import binascii
import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import socket
import stat
import time

# One day. DNS TTLs of the edge are minutes; a longer TTL is a broken or
# hostile answer, and a plan older than a day should be resolved again anyway.
MAX_TTL = 86400
# Other users may neither write to the directory nor to anything in it.
UNSAFE_MODE = stat.S_IWGRP | stat.S_IWOTH


class UntrustedCache(Exception):
    """The cache directory or one of its files cannot be trusted; the message says why."""


def cache_key(value):
    """Stable for the same value, user and machine; different for another uid or host name."""
    scoped = {'value': value, 'uid': os.geteuid(), 'host': socket.gethostname()}
    return hashlib.sha256(json.dumps(scoped, sort_keys=True, default=str).encode()).hexdigest()


def _check_owned(info, what, path, kind):
    if not kind(info.st_mode):
        raise UntrustedCache('%s %s is not a %s' % (what, path, 'directory' if kind is stat.S_ISDIR else 'regular file'))
    if info.st_uid != os.geteuid():
        raise UntrustedCache('%s %s is owned by uid %d, not by this user (uid %d)'
                             % (what, path, info.st_uid, os.geteuid()))
    if info.st_mode & UNSAFE_MODE:
        raise UntrustedCache('%s %s is writable by other users (mode %04o)' % (what, path, stat.S_IMODE(info.st_mode)))


def private_directory(directory):
    """Create ``directory`` 0700 if missing; return a descriptor of it, or raise UntrustedCache unless it is ours alone.

    Opened with O_NOFOLLOW (a symlink to a directory is refused, whoever owns its target) and checked with fstat on
    that descriptor; every file below is then opened relative to it (dir_fd), so the directory cannot be swapped
    for another between the check and the use.
    """
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)  # never follows a symlink at ``directory``: EEXIST
    except FileExistsError:
        pass
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(directory):
            raise UntrustedCache('cache directory %s is a symbolic link' % directory) from error
        raise
    try:
        _check_owned(os.fstat(descriptor), 'cache directory', directory, stat.S_ISDIR)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _open_nofollow(directory, name, flags, mode=0o600):
    try:
        return os.open(name, flags | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), mode, dir_fd=directory)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UntrustedCache('%s is a symbolic link' % name) from error
        raise


@contextlib.contextmanager
def _locked(directory, name):
    # O_NONBLOCK: a FIFO planted as the lock would otherwise block the open forever.
    descriptor = _open_nofollow(directory, name, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK)
    try:
        _check_owned(os.fstat(descriptor), 'cache lock', name, stat.S_ISREG)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _read(directory, name, now):
    """The cached plan, or None when there is none or it expired; UntrustedCache when it is not ours."""
    try:
        descriptor = _open_nofollow(directory, name, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:  # missing, unreadable: nothing cached
        return None
    with os.fdopen(descriptor, encoding='utf-8') as handle:
        _check_owned(os.fstat(handle.fileno()), 'cache entry', name, stat.S_ISREG)
        try:
            entry = json.load(handle)
        except ValueError:
            return None
    if not isinstance(entry, dict) or not isinstance(entry.get('plan'), dict) \
            or isinstance(entry.get('expires'), bool) or not isinstance(entry.get('expires'), (int, float)):
        return None
    if not math.isfinite(entry['expires']):  # json reads NaN and Infinity; NaN compares false with every time
        raise UntrustedCache('cache entry %s expires at %r, not a time' % (name, entry['expires']))
    if entry['expires'] - now > MAX_TTL:
        raise UntrustedCache('cache entry %s expires in %ds, more than the %ds any entry may live'
                             % (name, int(min(entry['expires'] - now, 10 ** 12)), MAX_TTL))
    if entry['expires'] <= now:
        return None
    return entry['plan']


def _write(directory, name, plan, expires):
    # A new 0600 file (O_EXCL) renamed over the entry: the rename replaces a planted symlink, never follows it.
    temporary = '.plan-%s' % binascii.hexlify(os.urandom(8)).decode()
    descriptor = _open_nofollow(directory, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(descriptor, 'w', encoding='utf-8') as stream:
            json.dump({'expires': expires, 'plan': plan}, stream)
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise


def _ignore(warn, reason):
    warn('edge_endpoints: ignoring the plan cache: %s; resolving afresh' % reason)


def cached(directory, key, compute, clock=time.time, warn=None, check=None):
    """Return the cached plan for ``key``, or ``compute()`` it and cache it.

    ``compute()`` returns ``(plan, ttl)``; a ttl of 0 or None is not cached
    (a catalog fallback, a zero TTL), a ttl above MAX_TTL is cut to it. The
    second value returned says whether the plan came from the cache.
    ``check(plan)`` returns why a cached plan must not be used (None when it
    may): the lookup's ownership guard. ``warn`` receives why the cache was
    ignored; an untrusted cache is never fatal, the plan is resolved afresh.
    """
    warn = warn or (lambda message: None)
    try:
        descriptor = private_directory(directory)
    except (UntrustedCache, OSError, ValueError) as error:  # ValueError: a NUL in cache_dir
        _ignore(warn, error)
        return compute()[0], False
    name = key + '.json'
    path = os.path.join(directory, name)
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, descriptor)
        try:
            stack.enter_context(_locked(descriptor, name + '.lock'))
        except (UntrustedCache, OSError) as error:
            _ignore(warn, '%s in %s' % (error, directory))
            return compute()[0], False
        try:
            plan = _read(descriptor, name, clock())
        except UntrustedCache as error:
            _ignore(warn, '%s in %s' % (error, directory))
            plan = None
        problem = check(plan) if plan is not None and check else None
        if problem:
            _ignore(warn, 'cache entry %s: %s' % (path, problem))
            plan = None
        if plan is not None:
            return plan, True
        plan, ttl = compute()
        if ttl:
            _write(descriptor, name, plan, clock() + min(ttl, MAX_TTL))
        return plan, False
