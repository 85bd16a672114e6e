# -*- coding: utf-8 -*-
"""Which egress_firewall_* / tunnelwall_* names are known, and what a typo meant (plugin_utils/known_variables.py)."""

from __future__ import annotations

from ansible_collections.tunnelwall.cloudflared.plugins.lookup import edge_endpoints
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import known_variables as kv


def known():
    return kv.role_variables() | set(kv.lookup_variables(edge_endpoints.DOCUMENTATION)) | set(kv.PLAYBOOK_VARIABLES)


def test_the_known_names_come_from_the_argument_specs_and_the_lookups_docs():
    names = known()
    assert {'egress_firewall_default_deny', 'egress_firewall_result', 'tunnelwall_edge_region', 'tunnelwall_targets'} <= names
    assert kv.lookup_variables(edge_endpoints.DOCUMENTATION)['tunnelwall_edge_dns_port'] == 'port'


def test_typos_are_named_with_the_closest_known_name_and_other_names_pass():
    found = kv.unknown(['egress_firewall_default_denny', 'tunnelwall_targts', 'ansible_host', '__egress_firewall_x',
                        'egress_firewall_zzzzzzzzzzzzzzzzzzzzzz'], known())
    assert found == [('egress_firewall_default_denny', 'egress_firewall_default_deny'),
                     ('egress_firewall_zzzzzzzzzzzzzzzzzzzzzz', None), ('tunnelwall_targts', 'tunnelwall_targets')]
    assert kv.describe(found[:1]) == ('unknown variable egress_firewall_default_denny '
                                      '(did you mean egress_firewall_default_deny?)')


def test_names_of_your_own_are_accepted_by_name_or_prefix():
    names = ['tunnelwall_lab_ca', 'tunnelwall_lab_decoy', 'tunnelwall_owner', 'tunnelwall_other']
    assert kv.unknown(names, known(), accepted=['tunnelwall_lab_*', 'tunnelwall_owner'])[0][0] == 'tunnelwall_other'


def test_the_same_options_give_the_same_key_whatever_their_order():
    assert kv.options_key({'region': 'us', 'ip_version': '4'}) == kv.options_key({'ip_version': '4', 'region': 'us'})
    assert kv.options_key({'region': 'us'}) != kv.options_key({'region': 'fed'})


def test_choice_lists_from_lists_and_strings_and_what_is_unknown():
    choices = ('tunnel', 'api', 'update', 'extra')
    assert kv.choice_list('egress_firewall_purposes', 'tunnel,\n api', choices) == (['tunnel', 'api'], None)
    assert kv.choice_list('egress_firewall_purposes', ['api'], choices) == (['api'], None)
    items, problem = kv.choice_list('egress_firewall_purposes', 'tunnel\n api,\nmail', choices)
    assert items is None and problem == ('egress_firewall_purposes="tunnel\\n api,\\nmail": unknown mail '
                                         '(choose from tunnel, api, update, extra).')
    assert 'expected a list' in kv.choice_list('egress_firewall_require', 7, choices)[1]


def test_windows_is_told_by_connection_shell_or_facts():
    assert kv.on_windows({'ansible_connection': 'psrp'})
    assert kv.on_windows({'ansible_shell_type': 'powershell'})
    assert kv.on_windows({'ansible_facts': {'os_family': 'Windows'}})
    assert not kv.on_windows({'ansible_connection': 'ssh', 'ansible_facts': {'os_family': 'Debian'}})
