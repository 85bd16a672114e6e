# -*- coding: utf-8 -*-
"""The plan cache as an attacker sees it, against the lookup and a real DNS server.

Another local user (``nobody``) can write to a shared ANSIBLE_LOCAL_TEMP such
as /tmp. Every way of planting or bending a cache entry below must end the
same way: a warning naming what was wrong, fresh DNS queries, and the real
plan, never the planted one.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import time

import pytest

from tests.support import edge_zone

NOBODY = pwd.getpwnam('nobody').pw_uid
# What an attacker wants the next run to apply: ssh to half the Internet.
EVIL_RULE = {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 22, 'ipv4': ['0.0.0.0/1'], 'ipv6': []}


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / 'cache'


@pytest.fixture
def cached_lookup(lookup, cache_dir):
    def call(**options):
        return lookup(cache_dir=str(cache_dir), **options)
    return call


def entry_path(cache_dir):
    entries = glob.glob(str(cache_dir / '*.json'))
    assert len(entries) == 1, entries
    return entries[0]


def planted(plan):
    """The cached plan as an attacker rewrites it."""
    evil = json.loads(json.dumps(plan))
    evil['rules'].append(EVIL_RULE)
    return evil


def write_entry(path, plan, expires=None):
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump({'expires': expires or time.time() + 3600, 'plan': plan}, handle)


def assert_resolved_afresh(dns, plan, warnings, reason):
    assert dns.queries(), 'the lookup used the cache instead of asking DNS'
    assert EVIL_RULE not in plan['rules']
    assert plan['endpoints'][0]['ipv4'] == edge_zone.lab_addresses('region1.v2.argotunnel.com')['A']
    matching = [w for w in warnings if 'ignoring the plan cache' in w and reason in w]
    assert matching, warnings


def test_a_good_entry_is_used(cached_lookup, dns, warnings):
    first = cached_lookup()
    dns.clear_log()
    assert cached_lookup() == first
    assert dns.queries() == []
    assert not [w for w in warnings if 'cache' in w]


@pytest.mark.parametrize('options', [
    {'extra_hostnames': ['github.com', {'hostname': 'myteam.cloudflareaccess.com', 'port': 8443,
                                        'protocols': ['udp', 'tcp'], 'verify_ownership': True}]},
    {'generation': 'both', 'prefix_v4': 24, 'prefix_v6': 64},
    {'verify_ownership': False, 'trusted_ranges': []},
])
def test_a_good_entry_of_other_options_is_used_too(cached_lookup, dns, warnings, options):
    """The checks of a cached plan accept every plan the lookup itself writes."""
    first = cached_lookup(**options)
    dns.clear_log()
    assert cached_lookup(**options) == first
    assert dns.queries() == []
    assert not [w for w in warnings if 'cache' in w]


@pytest.mark.root
def test_directory_created_by_another_user_is_ignored(cached_lookup, cache_dir, dns, warnings):
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, NOBODY, NOBODY)
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'owned by uid %d' % NOBODY)
    # Nothing was written into the other user's directory.
    assert os.listdir(cache_dir) == []


@pytest.mark.parametrize('mode', [0o770, 0o707, 0o1777])
def test_directory_writable_by_others_is_ignored(cached_lookup, cache_dir, dns, warnings, mode):
    cache_dir.mkdir()
    os.chmod(cache_dir, mode)
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'writable by other users')
    assert os.listdir(cache_dir) == []


def test_directory_that_is_a_symlink_is_ignored(cached_lookup, cache_dir, tmp_path, dns, warnings):
    target = tmp_path / 'elsewhere'
    target.mkdir(mode=0o700)
    cache_dir.symlink_to(target)
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'symbolic link')
    assert os.listdir(target) == []


def test_new_directory_is_private(cached_lookup, cache_dir):
    cached_lookup()
    assert os.lstat(cache_dir).st_mode & 0o777 == 0o700
    assert os.lstat(entry_path(cache_dir)).st_mode & 0o777 == 0o600


def test_symlinked_entry_is_not_followed(cached_lookup, cache_dir, tmp_path, dns, warnings):
    plan = cached_lookup()
    path = entry_path(cache_dir)
    bait = tmp_path / 'bait.json'
    write_entry(bait, planted(plan))
    os.unlink(path)
    os.symlink(bait, path)
    dns.clear_log()
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'symbolic link')
    # The fresh plan replaced the link itself; the bait is untouched.
    assert not os.path.islink(path)
    assert EVIL_RULE in json.loads(bait.read_text())['plan']['rules']


def test_symlinked_lock_is_not_followed(cached_lookup, cache_dir, tmp_path, dns, warnings):
    cached_lookup()
    lock = entry_path(cache_dir) + '.lock'
    victim = tmp_path / 'victim'
    victim.write_text('precious')
    os.unlink(lock)
    os.symlink(victim, lock)
    dns.clear_log()
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'symbolic link')
    assert victim.read_text() == 'precious'


@pytest.mark.root
def test_entry_owned_by_another_user_is_ignored(cached_lookup, cache_dir, dns, warnings):
    plan = cached_lookup()
    path = entry_path(cache_dir)
    write_entry(path, planted(plan))
    os.chown(path, NOBODY, NOBODY)
    dns.clear_log()
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'owned by uid %d' % NOBODY)


def test_entry_outside_the_trusted_ranges_fails_the_guard(cached_lookup, cache_dir, dns, warnings):
    plan = cached_lookup()
    path = entry_path(cache_dir)
    # A consistent plan (rules rebuilt from the endpoints) whose addresses are not the lab's.
    evil = json.loads(json.dumps(plan))
    evil['endpoints'][0]['ipv4'] = [edge_zone.SPOOFED['A']]
    for rule in evil['rules']:
        if rule['purpose'] == 'tunnel':
            rule['ipv4'] = sorted(set(rule['ipv4']) | {edge_zone.SPOOFED['A'] + '/32'})
    write_entry(path, evil)
    dns.clear_log()
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'addresses outside trusted_ranges')
    assert edge_zone.SPOOFED['A'] not in plan['endpoints'][0]['ipv4']


def test_entry_with_rules_not_its_endpoints_is_ignored(cached_lookup, cache_dir, dns, warnings):
    plan = cached_lookup()
    write_entry(entry_path(cache_dir), planted(plan))
    dns.clear_log()
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'rules are not the rules of its endpoints')


def test_entry_with_an_extra_host_nobody_asked_for_is_ignored(cached_lookup, cache_dir, dns, warnings):
    plan = cached_lookup()
    evil = json.loads(json.dumps(plan))
    evil['endpoints'].append({'hostname': 'evil.example', 'purpose': 'extra', 'port': 22, 'protocols': ['tcp'],
                              'server_names': {}, 'ipv4': ['203.0.113.66'], 'ipv6': [], 'ttl': 300})
    evil['rules'].append({'purpose': 'extra', 'protocol': 'tcp', 'port': 22, 'ipv4': ['203.0.113.66/32'], 'ipv6': []})
    write_entry(entry_path(cache_dir), evil)
    dns.clear_log()
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'evil.example is not in extra_hostnames')


def test_absurd_ttl_is_ignored(cached_lookup, cache_dir, dns, warnings):
    plan = cached_lookup()
    write_entry(entry_path(cache_dir), plan, expires=time.time() + 10 ** 9)
    dns.clear_log()
    plan = cached_lookup()
    assert_resolved_afresh(dns, plan, warnings, 'more than the 86400s any entry may live')


def test_a_long_dns_ttl_is_cached_for_a_day_at_most(cached_lookup, cache_dir, dns):
    dns.set(ttl=2 ** 31 - 1)
    cached_lookup()
    with open(entry_path(cache_dir), encoding='utf-8') as handle:
        expires = json.load(handle)['expires']
    assert expires - time.time() <= 86400


@pytest.mark.root
def test_key_is_specific_to_the_user():
    """The same options give another key for another uid: root's entries are not what nobody reads, and back."""
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import plan_cache
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.setuid(NOBODY)
            os.write(write, plan_cache.cache_key({'plan_version': 1}).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as handle:
        nobody_key = handle.read()
    assert len(nobody_key) == 64
    assert nobody_key != plan_cache.cache_key({'plan_version': 1})
