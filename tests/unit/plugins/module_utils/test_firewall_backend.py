# -*- coding: utf-8 -*-
"""How egress_firewall_info chooses the firewall and says what it found."""

from __future__ import annotations

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import firewall_backend


def found(firewalld=(False, False), ufw=(False, False)):
    return {'firewalld': {'installed': firewalld[0], 'running': firewalld[1], 'version': '1.3.3' if firewalld[1] else None,
                          'detail': 'RUNNING' if firewalld[1] else 'state FAILED'},
            'ufw': {'installed': ufw[0], 'enabled': ufw[1]}}


def test_a_running_firewalld_wins_over_ufw():
    assert firewall_backend.choose(found(firewalld=(True, True), ufw=(True, True))) == 'firewalld'


def test_an_installed_ufw_is_chosen_even_inactive_so_that_ufw_egress_can_say_so():
    assert firewall_backend.choose(found(firewalld=(True, False), ufw=(True, False))) == 'ufw'


def test_nothing_usable_gives_none_and_a_description_of_what_was_found():
    nothing = found(firewalld=(True, False))
    assert firewall_backend.choose(nothing) is None
    assert firewall_backend.describe(nothing) == 'firewalld installed but not running (state FAILED); ufw not installed'
    assert firewall_backend.describe(found()) == 'firewalld not installed; ufw not installed'
    assert firewall_backend.describe(found(firewalld=(True, True), ufw=(True, False))) == \
        'firewalld 1.3.3 running; ufw installed, inactive'
