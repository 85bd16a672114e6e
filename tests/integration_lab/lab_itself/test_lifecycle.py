# -*- coding: utf-8 -*-
"""The lab's life cycle and the machine's safety: collisions refused, nothing left behind, the root namespace untouched.

`lab_first` tests run before the session's lab is up, `lab_last` after every other test of the session.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.lab import config
from tests.lab.fixtures import SESSION
from tests.lab.lab import Lab
from tests.lab.system import (collisions, is_same, lab_links, lab_mounts, lab_namespaces, machine_routes, proc_state,
                              root_snapshot, snapshot_diff)

# The lab's own behaviour, whatever ansible-core drives it: `make test` runs this once, in the latest venv
# (marker `once`, see the Makefile).
pytestmark = [pytest.mark.once,
              pytest.mark.skipif(SESSION.reuse, reason='TWLAB_REUSE=1: the lab in use is not this session\'s to take down')]

PR_SET_CHILD_SUBREAPER = 36


def _colliding_mgmt_range():
    """A /24 that overlaps a route this machine really has: its uplink's if it has one, else loopback's."""
    for network, _text in machine_routes():
        if network.version == 4 and not network.is_loopback:
            return str(ipaddress.ip_network('%s/24' % network.network_address, strict=False))
    return '127.0.0.0/24'


def _nothing_left():
    assert lab_namespaces() == []
    assert lab_links() == []
    assert lab_mounts() == [], 'a host mount (its /etc overlay, its /run) outlived the lab'
    assert not os.path.exists('/run/netns') or not any(n.startswith(config.PREFIX) for n in os.listdir('/run/netns'))


@pytest.mark.lab_first
def test_collision_check_sees_the_machines_routes():
    routes = machine_routes()
    assert routes, 'ip route show table all gave nothing'
    network, text = routes[0]
    assert (str(network), text) in collisions([network], routes)
    # The collision check, asked about the uplink's ranges (never assigned anywhere).
    if any(n.overlaps(ipaddress.ip_network('192.0.2.0/24')) for n, _text in routes):
        assert collisions(['192.0.2.0/24'], routes)
        assert collisions(['192.0.2.128/25'], routes)
    if any(n.version == 6 and n.overlaps(ipaddress.ip_network('fd00::/64')) for n, _text in routes):
        assert collisions(['fd00::/64'], routes)
    # With no lab up, the lab's own ranges collide with nothing.
    assert collisions(config.Layout(config.parse_hosts(config.DEFAULT_HOSTS)).networks(), routes) == []


@pytest.mark.lab_first
def test_up_refuses_a_range_that_collides_with_a_route(tmp_path, lab_cli):
    before = root_snapshot()
    colliding = _colliding_mgmt_range()
    result = lab_cli(str(tmp_path), 'up', '--mgmt-range', colliding)
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'collides with the machine route' in result.stderr and colliding.rsplit('.', 1)[0] in result.stderr
    assert snapshot_diff(before, root_snapshot()) == []
    _nothing_left()
    assert not os.path.exists(os.path.join(str(tmp_path), 'state.json'))


@pytest.mark.lab_first
def test_up_refuses_ranges_outside_the_documentation_ranges():
    layout = config.Layout(config.parse_hosts('none:1'), '10.99.0.0/24')
    with pytest.raises(config.ConfigError, match='assigns only inside'):
        layout.check_assignable()


def _state(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return {}


@pytest.mark.lab_first
def test_down_cleans_up_after_a_killed_up(tmp_path):
    """SIGKILL `up` half-way (no chance to clean up), then `down` must leave nothing behind, twice."""
    before = root_snapshot()
    libc = ctypes.CDLL(None, use_errno=True)
    # Become the subreaper of the killed `up`'s daemons, so down() can reap them and nothing lingers as a zombie.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        for _attempt in range(3):
            state_path = os.path.join(str(tmp_path), 'state.json')
            process = subprocess.Popen([sys.executable, '-m', 'tests.lab', '--dir', str(tmp_path), 'up', '--hosts', 'firewalld:2,ufw:2'],
                                       cwd=config.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(p['role'] == 'sshd' for p in _state(state_path).get('processes', [])):
                time.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            process.wait()
            state = _state(state_path)
            if state.get('phase') == 'starting':
                break
            Lab(str(tmp_path)).down()
        assert state.get('phase') == 'starting', 'could not catch `up` half-way in three tries'
        assert lab_namespaces(), 'the killed up left nothing to clean: the test proves nothing'
        recorded = state['processes']
        assert any(is_same(r) for r in recorded)
        lab = Lab(str(tmp_path))
        assert lab.down() < 10
        _nothing_left()
        assert [r for r in recorded if is_same(r)] == []
        assert snapshot_diff(before, root_snapshot()) == []
        assert lab.down() < 10, 'a second down must be harmless'
        _nothing_left()
        assert snapshot_diff(before, root_snapshot()) == []
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.mark.lab_first
def test_up_is_ready_in_under_30_seconds():
    """The session's lab itself: every host answers SSH and its firewall runs."""
    lab = SESSION.ensure_up()
    assert lab.is_up and lab.status()['healthy']
    assert SESSION.up_seconds < 30, 'up took %.1f s' % SESSION.up_seconds
    summary = lab.summary()
    print('up %.1f s, %d processes, RSS %.0f MiB, PSS %.0f MiB'
          % (SESSION.up_seconds, summary['processes'], summary['rss_bytes'] / 2 ** 20, summary['pss_bytes'] / 2 ** 20))


@pytest.mark.lab_last
def test_down_is_fast_and_leaves_the_machine_as_it_was():
    lab = SESSION.ensure_up()
    recorded = list(lab.state['processes'])
    pids = lab.lab_pids()
    assert len(pids) >= len(recorded)
    seconds = SESSION.ensure_down()
    assert seconds < 10, 'down took %.1f s' % seconds
    _nothing_left()
    assert [r for r in recorded if is_same(r)] == []
    assert [p for p in pids if proc_state(p) not in (None, 'Z')] == []
    assert snapshot_diff(SESSION.root_before, root_snapshot()) == []
    assert not os.path.exists(lab.inventory) and not os.path.exists(lab.state_path)
    again = Lab(lab.dir)
    assert again.down() < 10
    _nothing_left()
    assert snapshot_diff(SESSION.root_before, root_snapshot()) == []
