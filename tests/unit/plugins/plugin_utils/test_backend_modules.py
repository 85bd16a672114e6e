# -*- coding: utf-8 -*-
"""firewall_egress's pure part: the module by backend name, the refusals, the rules and the verification's plan."""

from __future__ import annotations

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import backend_modules

PLAN = {'version': 1, 'region': 'global',
        'endpoints': [{'hostname': 'region1.v2.argotunnel.com', 'purpose': 'tunnel'},
                      {'hostname': 'api.cloudflare.com', 'purpose': 'api'}],
        'rules': [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.41.192.0/24'], 'ipv6': []},
                  {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['104.19.192.0/20'], 'ipv6': []}]}


def test_every_backend_has_its_module():
    assert backend_modules.BACKEND_MODULES['ufw'] == 'tunnelwall.cloudflared.ufw_egress'
    assert backend_modules.BACKEND_MODULES['windows'] == 'tunnelwall.cloudflared.win_firewall_egress'
    assert sorted(backend_modules.BACKEND_MODULES) == ['firewalld', 'nftables', 'ufw', 'windows']


def test_rules_and_verification_plan_keep_only_the_purposes_allowed():
    args = backend_modules.module_args('ufw', {'name': 'tw', 'profiles': ['Domain']}, PLAN, ['api'], {'timeout': 3.0})
    assert args['rules'] == [PLAN['rules'][1]] and 'profiles' not in args and args['name'] == 'tw'
    assert args['verify']['timeout'] == 3.0
    assert [e['purpose'] for e in args['verify']['plan']['endpoints']] == ['api']
    assert args['verify']['plan']['rules'] == [PLAN['rules'][1]] and args['verify']['plan']['region'] == 'global'
    windows = backend_modules.module_args('windows', {'profiles': ['Domain']}, PLAN, ['tunnel'], None)
    assert windows['profiles'] == ['Domain'] and 'verify' not in windows
    absent = backend_modules.module_args('nftables', {'state': 'absent'}, {}, [], {'timeout': 3.0})
    assert absent == {'state': 'absent'}


@pytest.mark.parametrize('backend, found, options, purposes, says', [
    ('', {'unreachable': True, 'msg': 'ssh: timed out'}, {}, ['tunnel'], 'cannot reach h1: ssh: timed out'),
    ('', {'description': 'firewalld stopped, ufw inactive'}, {}, ['tunnel'],
     'egress_firewall_backend=auto found no firewall to write on h1: firewalld stopped, ufw inactive. Start firewalld'),
    ('ufw', None, {'default_deny': True}, ['api'],
     'egress_firewall_default_deny=true, but the rules to apply hold no tunnel destination '
     '(egress_firewall_purposes=api, plan rules: tunnel,api)'),
])
def test_refusals_name_the_variable(backend, found, options, purposes, says):
    assert backend_modules.refusal('h1', backend, found, options, PLAN, purposes).startswith(says)


def test_no_refusal_when_the_tunnel_stays_or_nothing_is_denied_or_removing():
    assert backend_modules.refusal('h1', 'ufw', None, {'default_deny': True}, PLAN, ['tunnel']) is None
    assert backend_modules.refusal('h1', 'ufw', None, {'default_deny': False}, PLAN, ['api']) is None
    assert backend_modules.refusal('h1', 'ufw', None, {'default_deny': True, 'state': 'absent'}, {}, []) is None


@pytest.mark.parametrize('rules', [
    PLAN['rules'], PLAN['rules'][1:], [], [dict(PLAN['rules'][0], ipv4=[], ipv6=None)],
    [dict(PLAN['rules'][0], ipv4=[], ipv6=['2606:4700:a0::/48'])], [dict(PLAN['rules'][1], purpose='tunnel')]])
@pytest.mark.parametrize('options', [{'default_deny': True}, {'default_deny': False}, {'default_deny': True, 'state': 'absent'}])
def test_the_role_refuses_exactly_what_the_module_would(rules, options):
    # One test of "a default deny needs a tunnel destination": egress_request's, before connecting and on the host.
    plan = dict(PLAN, rules=rules)
    refused = backend_modules.refusal('h1', 'ufw', None, options, plan, ['tunnel', 'api']) is not None
    args = backend_modules.module_args('ufw', dict(options, name='tw'), plan, ['tunnel', 'api'], None)
    try:
        egress_request.build(args, 'ufw')
        module_refused = False
    except egress_request.RequestError as error:
        assert str(error).startswith('default_deny=True: no tunnel destination in rules')
        module_refused = True
    assert refused == module_refused == (options == {'default_deny': True} and not any(
        r['purpose'] == 'tunnel' and (r['ipv4'] or r['ipv6']) for r in rules))
