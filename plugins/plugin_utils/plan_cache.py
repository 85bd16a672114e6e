# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small file cache of egress plans, shared by every forked worker.

Ansible templates a lookup once per host, in up to ``forks`` processes at
once. A per-key lock file makes the first worker resolve while the others
wait and then read its plan, so a fleet run sends one set of queries, not
one per host. Entries live no longer than the smallest DNS TTL of the plan.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time


def cache_key(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def _locked(path):
    with open(path, 'a', encoding='utf-8') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path, now):
    try:
        with open(path, encoding='utf-8') as handle:
            entry = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get('plan'), dict) \
            or not isinstance(entry.get('expires'), (int, float)) or entry['expires'] <= now:
        return None
    return entry['plan']


def _write(path, plan, expires):
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.plan-')
    try:
        with os.fdopen(handle, 'w', encoding='utf-8') as stream:
            json.dump({'expires': expires, 'plan': plan}, stream)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def cached(directory, key, compute, clock=time.time):
    """Return the cached plan for ``key``, or ``compute()`` it and cache it.

    ``compute()`` returns ``(plan, ttl)``; a ttl of 0 or None is not cached
    (a catalog fallback, a zero TTL). The second value returned says whether
    the plan came from the cache.
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, key + '.json')
    with _locked(path + '.lock'):
        plan = _read(path, clock())
        if plan is not None:
            return plan, True
        plan, ttl = compute()
        if ttl:
            _write(path, plan, clock() + ttl)
        return plan, False
