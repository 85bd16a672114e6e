# -*- coding: utf-8 -*-
"""The origins check's proof against the real kernel: conntrack's NEW events tell an origin's own TCP reset (the SYN
left the host) from a reset a reject rule made on the host (it never left), in a throwaway network namespace (root;
the machine's own ruleset is never touched: the rules are loaded inside the namespace only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.once

RULES = """table inet t {
  chain o {
    type filter hook output priority filter;
    ip daddr 127.0.0.3 tcp dport 9 reject with tcp reset
    ct state new accept
  }
}
"""
CHECK = """
import json, sys
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import origins
allowed = [{'host': a, 'addresses': [a + '/32'], 'port': 9, 'protocol': 'tcp', 'source': 's'}
           for a in ('127.0.0.2', '127.0.0.3')]
check = origins.OriginCheck(allowed, timeout=1)
ok, output, message = check()
print(json.dumps({'ok': ok, 'rows': [(r['address'], r['state'], r['verdict']) for r in check.report['verification']]}))
"""


def run_in_namespace(rules):
    load = 'nft -f /dev/stdin <<"EOF"\n%sEOF\n' % rules if rules else ''
    script = 'ip link set lo up && %s%s -c "$CHECK"' % (load, sys.executable)
    result = subprocess.run(['unshare', '--net', 'sh', '-c', script], capture_output=True, text=True, timeout=60,
                            check=False, env=dict(os.environ, CHECK=CHECK))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def root():
    if os.geteuid() != 0:
        pytest.skip('needs root (a network namespace and its conntrack)')


def test_a_reset_made_here_is_blocked_and_the_origins_own_refusal_passes():
    found = run_in_namespace(RULES)
    assert not found['ok']
    (closed, closed_state, closed_verdict), (rejected, rejected_state, rejected_verdict) = found['rows']
    assert (closed, closed_state) == ('127.0.0.2/32', 'refused') and 'the SYN left this host' in closed_verdict
    assert (rejected, rejected_state) == ('127.0.0.3/32', 'blocked')
    assert 'refused by this host itself' in rejected_verdict and 'the SYN never left' in rejected_verdict


def test_without_connection_tracking_nothing_proves_it_and_it_is_blocked():
    found = run_in_namespace(None)  # no rule uses conntrack: it does not track in this namespace
    assert not found['ok'] and [row[1] for row in found['rows']] == ['blocked', 'blocked']
    assert all("nothing proves it is not this host's firewall" in row[2] for row in found['rows'])
