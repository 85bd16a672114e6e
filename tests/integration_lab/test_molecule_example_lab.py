# -*- coding: utf-8 -*-
"""The copyable molecule scenario's converge and verify (examples/molecule/egress_firewall), run on the lab's nftables
host as molecule would run them in a container: verify fails before converge, converge changes the host once and
then nothing, and verify passes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.lab import config
from tests.support.ansible_output import play_recap

BIN = os.path.dirname(sys.executable)
SCENARIO = os.path.join(config.REPO, 'examples', 'molecule', 'egress_firewall')
HOST = 'nft1'


@pytest.fixture
def nft_host(lab):
    lab.reset_firewalls((HOST,))
    yield lab
    lab.reset_firewalls((HOST,))


def run(lab, playbook):
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    result = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', lab.inventory, '--limit', HOST,
                             os.path.join(SCENARIO, playbook)], capture_output=True, text=True, env=env, timeout=300,
                            check=False, cwd=config.REPO)
    output = result.stdout + result.stderr
    return result.returncode, output, play_recap(result.stdout).get(HOST)


def test_verify_fails_before_converge_and_passes_after_an_idempotent_converge(nft_host):
    rc, output, _recap = run(nft_host, 'verify.yml')
    assert rc != 0 and 'backend nftables, drift' in output, output
    rc, output, recap = run(nft_host, 'converge.yml')
    assert rc == 0 and recap['changed'] >= 1, output
    rc, output, recap = run(nft_host, 'converge.yml')
    assert rc == 0 and recap['changed'] == 0, output
    rc, output, recap = run(nft_host, 'verify.yml')
    assert rc == 0 and recap['failed'] == 0, output
