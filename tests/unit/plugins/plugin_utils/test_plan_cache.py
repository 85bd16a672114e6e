# -*- coding: utf-8 -*-
"""The plan cache: TTLs with a fake clock, and real forked workers sharing one entry."""

from __future__ import annotations

import multiprocessing
import os
import time

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import plan_cache


class Counter:
    def __init__(self, ttl):
        self.calls = 0
        self.ttl = ttl

    def __call__(self):
        self.calls += 1
        return {'plan': self.calls}, self.ttl


def test_hit_within_ttl_and_miss_after(tmp_path):
    now = [1000.0]
    compute = Counter(ttl=60)
    assert plan_cache.cached(str(tmp_path), 'k', compute, clock=lambda: now[0]) == ({'plan': 1}, False)
    now[0] += 59
    assert plan_cache.cached(str(tmp_path), 'k', compute, clock=lambda: now[0]) == ({'plan': 1}, True)
    now[0] += 2
    assert plan_cache.cached(str(tmp_path), 'k', compute, clock=lambda: now[0]) == ({'plan': 2}, False)
    assert compute.calls == 2


def test_no_ttl_is_not_cached(tmp_path):
    compute = Counter(ttl=None)
    plan_cache.cached(str(tmp_path), 'k', compute)
    plan_cache.cached(str(tmp_path), 'k', compute)
    assert compute.calls == 2


def test_keys_are_separate_and_stable(tmp_path):
    assert plan_cache.cache_key({'a': 1, 'b': [2]}) == plan_cache.cache_key({'b': [2], 'a': 1})
    assert plan_cache.cache_key({'a': 1}) != plan_cache.cache_key({'a': 2})


def test_corrupt_entry_is_recomputed(tmp_path):
    compute = Counter(ttl=60)
    (tmp_path / 'k.json').write_text('{not json')
    assert plan_cache.cached(str(tmp_path), 'k', compute) == ({'plan': 1}, False)


def test_cache_directory_is_private(tmp_path):
    directory = tmp_path / 'cache'
    plan_cache.cached(str(directory), 'k', Counter(ttl=60))
    assert os.stat(directory).st_mode & 0o777 == 0o700


def _worker(directory, marker_dir, results):
    def compute():
        # Slow enough that every worker arrives while the first computes.
        with open(os.path.join(marker_dir, str(os.getpid())), 'w', encoding='utf-8'):
            pass
        time.sleep(0.3)
        return {'from': os.getpid()}, 60
    plan, hit = plan_cache.cached(directory, 'shared', compute)
    results.put((plan['from'], hit))


def test_forked_workers_compute_once(tmp_path):
    context = multiprocessing.get_context('fork')
    results = context.Queue()
    markers = tmp_path / 'computed'
    markers.mkdir()
    workers = [context.Process(target=_worker, args=(str(tmp_path / 'cache'), str(markers), results)) for dummy in range(5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    answers = [results.get(timeout=5) for dummy in workers]
    assert len(os.listdir(markers)) == 1
    assert len({origin for origin, hit in answers}) == 1
    assert sorted(hit for origin, hit in answers) == [False, True, True, True, True]


def test_ttl_is_capped_at_a_day(tmp_path):
    now = [1000.0]
    compute = Counter(ttl=10 ** 9)
    plan_cache.cached(str(tmp_path), 'k', compute, clock=lambda: now[0])
    now[0] += plan_cache.MAX_TTL - 1
    assert plan_cache.cached(str(tmp_path), 'k', compute, clock=lambda: now[0])[1] is True
    now[0] += 2
    assert plan_cache.cached(str(tmp_path), 'k', compute, clock=lambda: now[0])[1] is False


def test_check_refuses_a_cached_plan_with_a_warning(tmp_path):
    warnings = []
    compute = Counter(ttl=60)
    plan_cache.cached(str(tmp_path), 'k', compute)
    plan, hit = plan_cache.cached(str(tmp_path), 'k', compute, warn=warnings.append,
                                  check=lambda plan: 'planted' if plan == {'plan': 1} else None)
    assert (plan, hit) == ({'plan': 2}, False)
    assert warnings == ['edge_endpoints: ignoring the plan cache: cache entry %s: planted; resolving afresh'
                        % os.path.join(str(tmp_path), 'k.json')]


def test_a_fifo_as_lock_does_not_hang(tmp_path):
    os.mkfifo(str(tmp_path / 'k.json.lock'))
    warnings = []
    assert plan_cache.cached(str(tmp_path), 'k', Counter(ttl=60), warn=warnings.append) == ({'plan': 1}, False)
    assert 'not a regular file' in warnings[0]


def test_an_entry_that_never_expires_is_refused(tmp_path):
    """json reads NaN, and NaN compares false with every time: such an entry would be served for ever."""
    warnings = []
    compute = Counter(ttl=60)
    plan_cache.cached(str(tmp_path), 'k', compute, warn=warnings.append)
    path = tmp_path / 'k.json'
    path.write_text(path.read_text().replace('"expires": ', '"expires": NaN, "was": '))
    assert plan_cache.cached(str(tmp_path), 'k', compute, warn=warnings.append) == ({'plan': 2}, False)
    assert warnings and 'expires at nan, not a time' in warnings[0]
