# -*- coding: utf-8 -*-
"""egress_request: one validation and one meaning for every backend."""

from __future__ import annotations

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract, egress_request as er, egress_spec

TUNNEL = {'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11/32'], 'ipv6': ['2001:db8:e::11/128']}
API = {'purpose': 'api', 'protocol': 'tcp', 'port': 443, 'ipv4': ['198.51.100.80'], 'ipv6': []}
BACKENDS = ('firewalld', 'ufw', 'nftables', 'windows')


def build(backend='ufw', **params):
    return er.build(dict({'rules': [TUNNEL]}, **params), backend)


@pytest.mark.parametrize('backend', BACKENDS)
def test_the_same_options_mean_the_same_on_every_backend(backend):
    request = build(backend, default_deny=True, rules=[TUNNEL, API, dict(TUNNEL, ipv4=['198.51.100.12'])])
    assert request.rules == (er.Rule('tunnel', 'udp', 7844, ('198.51.100.11/32', '198.51.100.12/32'), ('2001:db8:e::11/128',)),
                             er.Rule('api', 'tcp', 443, ('198.51.100.80/32',), ()))
    assert request.default_deny and request.allow_dns
    assert request.deny_action == ('block' if backend == 'windows' else 'reject')


@pytest.mark.parametrize('params, message', [
    ({'default_deny': True, 'rules': [API]}, 'default_deny=True: no tunnel destination'),
    ({'default_deny': True, 'rules': [dict(TUNNEL, ipv4=[], ipv6=[])]}, 'default_deny=True: no tunnel destination'),
    ({'name': 'tw\n'}, "name='tw\\n'"),
    ({'name': 'a*b'}, "name='a*b'"),
    ({'name': ''}, "name=''"),
    ({'rules': [dict(TUNNEL, purpose='tunnel\n')]}, "rules[0].purpose='tunnel\\n'"),
    ({'rules': [dict(TUNNEL, ipv6=['fe80::1%eth0'])]}, "rules[0].ipv6[0]='fe80::1%eth0': an IPv6 zone id"),
    ({'rules': [dict(TUNNEL, ipv4=['198.51.100.11\n'])]}, "rules[0].ipv4[0]='198.51.100.11\\n'"),
    ({'rules': [dict(TUNNEL, ipv4=['198.51.100.1/24'])]}, "rules[0].ipv4[0]='198.51.100.1/24': host bits set; did you mean 198.51.100.0/24"),
    ({'rules': [dict(TUNNEL, ipv4=['0.0.0.0/0'])]}, "rules[0].ipv4[0]='0.0.0.0/0': a default route would allow everything"),
    ({'rules': [dict(TUNNEL, ipv4=['2001:db8::1'])]}, "rules[0].ipv4[0]='2001:db8::1': an IPv6 destination in the ipv4 list"),
    ({'rules': [dict(TUNNEL, port=65536)]}, 'rules[0].port=65536'),
    ({'rules': [dict(TUNNEL, port=True)]}, 'rules[0].port=True'),
    ({'rules': [dict(TUNNEL, protocol='icmp')]}, "rules[0].protocol='icmp'"),
    ({'rules': None}, 'rules=None: required with state=present'),
    ({'extra_allow': [{'protocol': 'tcp', 'port': 9, 'destinations': []}]}, 'extra_allow[0].destinations=[]'),
    ({'dns_servers': ['fe80::53%eth0']}, "dns_servers[0]='fe80::53%eth0': an IPv6 zone id"),
    ({'dns_servers': ['198.51.100.0/24']}, "dns_servers[0]='198.51.100.0/24': expected a nameserver address"),
    ({'confirm_timeout': -1}, 'confirm_timeout=-1'),
    ({'confirm_timeout': 86401}, 'confirm_timeout=86401'),
    ({'resolv_conf': 'etc/resolv.conf'}, "resolv_conf='etc/resolv.conf'"),
])
@pytest.mark.parametrize('backend', BACKENDS)
def test_bad_input_gets_the_same_error_naming_option_and_value_everywhere(backend, params, message):
    with pytest.raises(er.RequestError) as error:
        build(backend, **params)
    assert str(error.value).startswith(message)


def test_name_length_is_the_backends_own_limit():
    assert build('ufw', name='a' * 12).name == 'a' * 12
    with pytest.raises(er.RequestError, match='at most 11 characters for firewalld'):
        build('firewalld', name='a' * 12)


def test_dns_is_allowed_only_under_default_deny_to_given_or_host_resolvers():
    assert er.nameservers(build(), ['198.51.100.253'], []) == ()
    deny = build(default_deny=True)
    assert er.nameservers(deny, ['198.51.100.253', '127.0.0.53'], ['2001:db8:e::253']) == ('198.51.100.253', '2001:db8:e::253')
    assert er.nameservers(build(default_deny=True, dns_servers=['203.0.113.53']), ['198.51.100.253'], []) == ('203.0.113.53',)
    assert er.nameservers(build(default_deny=True, allow_dns=False), ['198.51.100.253'], []) == ()
    with pytest.raises(er.RequestError, match='allow_dns=True: no usable nameserver'):
        er.nameservers(deny, ['127.0.0.1'], [])


def test_absent_needs_no_rules_and_never_denies():
    request = er.build({'state': 'absent', 'default_deny': True}, 'ufw')
    assert request.rules == () and not request.default_deny and not request.allow_dns


# --- the host's own plumbing under a default deny: DHCP, MLD, the metadata service ----------------------

@pytest.mark.parametrize('backend', BACKENDS)
def test_dhcp_and_mld_are_on_and_metadata_off_by_default_under_default_deny(backend):
    request = build(backend, default_deny=True)
    assert (request.allow_dhcp, request.allow_mld, request.allow_metadata) == (True, True, False)
    assert er.metadata_destinations(request) == ((), ())


@pytest.mark.parametrize('backend', BACKENDS)
def test_host_services_mean_nothing_without_a_default_deny(backend):
    # Like allow_dns: without a deny everything gets out anyway, so no backend writes a rule for them.
    request = build(backend, allow_dhcp=True, allow_mld=True, allow_metadata=True)
    assert (request.allow_dhcp, request.allow_mld, request.allow_metadata) == (False, False, False)
    assert er.metadata_destinations(request) == ((), ())
    absent = build(backend, state='absent', default_deny=True, allow_metadata=True)
    assert not absent.allow_metadata and not absent.allow_dhcp


def test_each_host_service_can_be_turned_off_or_on_alone():
    request = build(default_deny=True, allow_dhcp=False, allow_mld=False, allow_metadata=True)
    assert (request.allow_dhcp, request.allow_mld, request.allow_metadata) == (False, False, True)
    assert er.metadata_destinations(request) == (('169.254.169.254/32',), ('fd00:ec2::254/128',))
    # None is "not given": the default, as the module spec fills it in.
    assert build(default_deny=True, allow_dhcp=None).allow_dhcp is True


def test_the_metadata_service_is_defined_once_by_family():
    assert sorted(er.METADATA) == sorted(egress_contract.FAMILIES)
    for family, addresses in er.METADATA.items():
        assert addresses and all(er.network(a, 'METADATA', family) == a for a in addresses)


@pytest.mark.parametrize('option', ['allow_dhcp', 'allow_mld', 'allow_metadata'])
@pytest.mark.parametrize('value', ['yes', 1, [], {'a': 1}])
def test_a_host_service_option_that_is_no_bool_is_refused_naming_it(option, value):
    with pytest.raises(er.RequestError, match='^%s=%s: expected true or false$' % (option, __import__('re').escape(repr(value)))):
        build(default_deny=True, **{option: value})


def test_every_backend_renders_the_same_dhcp_ports_as_the_request_model():
    # One meaning: the backends' own tables are the request model's (family, client port, server port).
    # (ufw_rules and nftables_rules render er.DHCP itself.)
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import firewalld_policy
    assert {family: client for family, client, dummy in er.DHCP} == firewalld_policy.DHCP_SOURCE_PORTS


def test_the_module_spec_defaults_are_the_request_models():
    # One default per option: a module that fills in its spec's defaults builds the request of one that gives none.
    spec = egress_spec.TRANSACTION_SPEC
    given = dict((option, spec[option]['default']) for option in ('allow_dns', 'allow_dhcp', 'allow_mld', 'allow_metadata',
                                                                  'confirm_timeout', 'lock_timeout'))
    assert build(default_deny=True, **given) == build(default_deny=True)
