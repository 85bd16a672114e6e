# -*- coding: utf-8 -*-
"""How egress_firewall_info chooses the firewall and says what it found."""

from __future__ import annotations

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import backend_choice


def found(firewalld=(False, False), ufw=(False, False), nftables=(False, False)):
    return {'firewalld': {'installed': firewalld[0], 'running': firewalld[1], 'version': '1.3.3' if firewalld[1] else None,
                          'detail': 'RUNNING' if firewalld[1] else 'state FAILED'},
            'ufw': {'installed': ufw[0], 'enabled': ufw[1]},
            'nftables': {'installed': nftables[0], 'usable': nftables[1], 'version': '1.0.6' if nftables[0] else None,
                         'detail': 'usable' if nftables[1] else 'Operation not permitted'}}


ANY = ((False, False), (True, False), (True, True))


@pytest.mark.parametrize('ufw', ANY)
@pytest.mark.parametrize('nftables', ANY)
def test_a_running_firewalld_wins_over_everything(ufw, nftables):
    assert backend_choice.choose(found(firewalld=(True, True), ufw=ufw, nftables=nftables)) == 'firewalld'


@pytest.mark.parametrize('firewalld', ((False, False), (True, False)))
@pytest.mark.parametrize('nftables', ANY)
def test_an_enabled_ufw_wins_over_nftables(firewalld, nftables):
    assert backend_choice.choose(found(firewalld=firewalld, ufw=(True, True), nftables=nftables)) == 'ufw'


@pytest.mark.parametrize('firewalld', ((False, False), (True, False)))
@pytest.mark.parametrize('ufw', ((False, False), (True, False)))
def test_nftables_is_chosen_where_nft_is_usable_and_no_firewall_manager_runs(firewalld, ufw):
    assert backend_choice.choose(found(firewalld=firewalld, ufw=ufw, nftables=(True, True))) == 'nftables'


@pytest.mark.parametrize('nftables', ((False, False), (True, False)))
def test_an_inactive_ufw_is_chosen_only_where_nft_cannot_be_used_so_that_ufw_egress_can_say_so(nftables):
    assert backend_choice.choose(found(firewalld=(True, False), ufw=(True, False), nftables=nftables)) == 'ufw'


def test_nothing_usable_gives_none_and_a_description_of_what_was_found():
    nothing = found(firewalld=(True, False), nftables=(True, False))
    assert backend_choice.choose(nothing) is None
    assert backend_choice.choose(found()) is None
    assert backend_choice.describe(nothing) == ('firewalld installed but not running (state FAILED); ufw not installed; '
                                                'nft installed but not usable (Operation not permitted)')
    assert backend_choice.describe(found()) == 'firewalld not installed; ufw not installed; nft not installed'
    assert backend_choice.describe(found(firewalld=(True, True), ufw=(True, False), nftables=(True, True))) == \
        'firewalld 1.3.3 running; ufw installed, inactive; nftables 1.0.6 usable'


def test_a_result_without_nftables_still_chooses_and_describes():
    """What an older egress_firewall_info returned (no nftables key): nftables counts as not installed."""
    old = found(ufw=(True, False))
    del old['nftables']
    assert backend_choice.choose(old) == 'ufw'
    assert backend_choice.describe(old).endswith('; nft not installed')
