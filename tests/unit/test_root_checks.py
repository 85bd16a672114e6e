# -*- coding: utf-8 -*-
"""Every Linux firewall module says it must run as root, instead of a traceback half-way."""

from __future__ import annotations

import os

import pytest

from tests.support.module_runner import run_module

PLAN_RULES = [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32'], 'ipv6': []}]


@pytest.mark.parametrize('module', ['firewalld_egress', 'ufw_egress', 'nftables_egress'])
def test_a_firewall_module_without_root_fails_clearly_changing_nothing(module, monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    result = run_module(module, {'name': 'tunnelwall', 'rules': PLAN_RULES, 'confirm_timeout': 0})
    assert result.get('failed') and 'exception' not in result, result
    assert result['msg'] == 'this module changes the firewall and must run as root (become: true)'
    assert result['module'] == 'tunnelwall.cloudflared.%s' % module
