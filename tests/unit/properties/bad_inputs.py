# -*- coding: utf-8 -*-
"""The table of bad inputs tried on every plugin, and how one is tried.

Each ``Row`` is one option of one plugin and one kind of bad value: a
hypothesis strategy that generates such values, one concrete ``example``
(shown in docs/bad-input.md), and where the value goes in the plugin's
options. ``PLUGINS`` says how a plugin is run: from valid options (``base``),
a function that returns an ``Outcome`` — a clear failure (its message), a
success (a normalised value), or a traceback (an exception escaped, or a
result mentions one).

The rule every row is held to (tests/unit/properties/test_bad_input.py):
no traceback, ever; a failure names the row's option (``names``); and unless
``may_pass`` says a normalised value is fine, the value must be refused.

Adding a plugin (the firewall modules, say):

1. write a runner: options dict -> Outcome. A module runs in-process with
   tests/support/module_runner.run_module (AnsibleModule's real argument
   handling; a refusal must come before the module reads or changes anything
   on the host), an action plugin with run_action. Catch every exception into
   ``_traceback()``: an exception is what this suite hunts;
2. add a ``Plugin`` to PLUGINS: its name, valid base options (that, when a
   ``may_pass`` value is accepted, touch nothing outside loopback or a temporary
   directory), and the runner;
3. add rows with ``plugin=`` that name: ``option`` is where the value goes
   (``rules[].port`` steps into the first rule), ``values`` a strategy (the
   helpers below: huge, unicode_text, with_control, with_newline, ZONED, out_of),
   ``example`` one concrete bad value;
4. regenerate docs/bad-input.md (``python tools/bad_input_table.py`` in the test
   environment, see its docstring) and commit it; tests/unit/test_bad_input_doc.py
   fails while the page is stale.

For a firewall module that must also prove "nothing on the host changed when
it failed", run it in a lab host (tests/integration, under the lab lock) and
compare the ruleset before and after; the table's rows can be reused there.
"""

from __future__ import annotations

import copy
import math
import dataclasses
import os
import shutil
import tempfile
import traceback
from typing import Any, Callable

from hypothesis import strategies as st

KINDS = ('wrong type', 'out of range', 'empty', 'huge', 'unicode', 'control characters', 'trailing newline',
         'IPv6 zone id', 'duplicates', 'malformed')
HUGE = 10000


@dataclasses.dataclass
class Outcome:
    failed: bool = False
    message: str = ''
    value: Any = None
    traceback: str = ''


@dataclasses.dataclass(frozen=True)
class Plugin:
    name: str
    base: Callable[[], dict]
    run: Callable[[dict], Outcome]


@dataclasses.dataclass(frozen=True)
class Row:
    plugin: str
    option: str                     # as a user writes it: port, plan.endpoints[].port, targets[].address
    kind: str
    values: Any                     # hypothesis strategy of bad values
    example: Any                    # one of them, tried too and shown in the docs
    may_pass: bool = False          # a normalised success is fine (whitespace stripped, duplicates merged)
    names: str = ''                 # what a failure must name; default: the option's last part
    also: tuple = ()                # other words a failure may name instead (see note)
    note: str = ''                  # shown in the docs: why a row is held to a weaker rule

    @property
    def named(self):
        """What a failure must name: ``names``, or the last part of the option (port of plan.endpoints[].port)."""
        return self.names or [part for part in self.option.replace('[]', '').split('.') if part][-1]

    def place(self, options, value):
        """``options`` with ``value`` put where ``option`` says (a deep copy; lists step into their first item)."""
        options = copy.deepcopy(options)
        parts = self.option.replace('[]', '.[]').split('.')
        node = options
        for part in parts[:-1]:
            node = node[0] if part == '[]' else node[part]
        if parts[-1] == '[]':
            node[0] = value
        else:
            node[parts[-1]] = value
        return options


# Strategies -------------------------------------------------------------------------------------------------------

def huge(item):
    return st.builds(lambda value: [value] * HUGE, item)


def unicode_text(min_size=1):
    return st.text(st.characters(min_codepoint=0x80, blacklist_categories=('Cs',)), min_size=min_size, max_size=12)


def with_control(valid, nul=True):
    """``valid`` with a control character somewhere in it (C0 and DEL; NUL unless ``nul`` is false)."""
    return st.builds(lambda char, at: valid[:at] + char + valid[at:],
                     st.sampled_from([chr(n) for n in range(0 if nul else 1, 32)] + ['\x7f']), st.integers(0, len(valid)))


def with_newline(valid):
    return st.sampled_from([valid + '\n', valid + '\r\n', valid + '\n\n'])


ZONED = st.sampled_from(['fe80::1%eth0', '2001:db8::1%1', 'fe80::1%25lo', '::1%lo', 'fe80::%'])
WRONG_SCALARS = st.one_of(st.lists(st.integers(), min_size=1, max_size=3),
                          st.dictionaries(st.text(max_size=4), st.integers(), min_size=1, max_size=3))
NOT_INTEGERS = st.one_of(st.floats(allow_nan=True).filter(lambda f: not math.isfinite(f) or f != int(f)),
                         st.text(st.characters(whitelist_categories=('L',)), min_size=1, max_size=5), WRONG_SCALARS)
NOT_NUMBERS = st.one_of(st.text(st.characters(whitelist_categories=('L',)), min_size=1, max_size=5), WRONG_SCALARS)
NOT_BOOLEANS = st.one_of(st.sampled_from(['maybe', 'ja', '2', 'truee']), WRONG_SCALARS)


def out_of(low, high):
    return st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1))


# Runners ----------------------------------------------------------------------------------------------------------

def _traceback():
    return Outcome(failed=True, traceback=traceback.format_exc())


def _mentions_traceback(result):
    text = repr(result)
    return 'Traceback (most recent call last)' in text or 'exception' in result


def run_lookup_options(options):
    """The lookup's option handling as run() does it: Ansible's set_options, then edge_options.parse_options."""
    from ansible.errors import AnsibleError
    from ansible.plugins.loader import lookup_loader
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import edge_options
    lookup = lookup_loader.get('tunnelwall.cloudflared.edge_endpoints')
    try:
        edge_options.check_raw(options)
        lookup.set_options(var_options={}, direct=options)
        return Outcome(value=edge_options.parse_options(lookup.get_option))
    except AnsibleError as error:
        return Outcome(failed=True, message=str(error))
    except Exception:  # pylint: disable=broad-except  # what this suite hunts
        return _traceback()


def lookup_base():
    return {'nameservers': ['127.0.0.1'], 'port': 53, 'trusted_ranges': ['198.51.100.0/24'], 'cache': False}


def probe_plan():
    """One tunnel endpoint on loopback, where nothing listens: an accepted value costs one refused connection."""
    return {
        'version': 1, 'srv_names': ['_v2-origintunneld._tcp.argotunnel.com'],
        'endpoints': [{'hostname': 'region1.v2.argotunnel.com', 'purpose': 'tunnel', 'port': 7844,
                       'protocols': ['tcp', 'udp'], 'server_names': {'tcp': 'h2.cftunnel.com', 'udp': 'quic.cftunnel.com'},
                       'ipv4': ['127.0.0.1'], 'ipv6': []}],
    }


def probe_base():
    # No nameserver (an empty resolv.conf path) and no requirement: an accepted value asks nothing of DNS.
    return {'plan': probe_plan(), 'timeout': 0.3, 'resolv_conf': '/nonexistent/resolv.conf', 'require': [],
            'ip_version': '4'}


def probe_targets_base():
    return {'targets': [{'address': '127.0.0.1', 'port': 7844, 'check': 'tls', 'server_name': 'h2.cftunnel.com'}],
            'timeout': 0.3, 'resolv_conf': '/nonexistent/resolv.conf', 'require': []}


def run_edge_probe(options):
    from tests.support.module_runner import run_module
    try:
        result = run_module('edge_probe', options)
    except Exception:  # pylint: disable=broad-except
        return _traceback()
    if _mentions_traceback(result):
        return Outcome(failed=True, traceback=repr(result))
    if result.get('failed') and 'results' not in result:
        return Outcome(failed=True, message=result.get('msg', ''))
    return Outcome(value=result)


def run_win_edge_probe(options):
    """The action's half: validation, then the datagrams and questions it would hand to Windows."""
    from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_probe
    options = dict(options)
    options.pop('resolv_conf', None)  # edge_probe's own option; win_edge_probe has none
    try:
        params, problem = windows_probe.validate(options)
        if problem:
            return Outcome(failed=True, message='win_edge_probe: %s' % problem)
        return Outcome(value=windows_probe.prepare(params))
    except Exception:  # pylint: disable=broad-except
        return _traceback()


def fleet_base():
    return {'results': {'web1': None}, 'formats': ['json'], 'dest': 'DEST'}


def run_fleet_report(options):
    """The action in-process, writing into a fresh private directory; a refusal must leave it empty."""
    from tests.support.module_runner import run_action
    workdir = tempfile.mkdtemp(prefix='tw-bad-input-')
    try:
        options = dict(options)
        if options.get('dest') == 'DEST':
            options['dest'] = os.path.join(workdir, 'reports')
        elif isinstance(options.get('dest'), str) and options['dest']:
            options['dest'] = os.path.join(workdir, options['dest'])  # never outside the private directory
        task_vars = {'hostvars': {'web1': {}, 'web2': {}}, 'ansible_play_hosts_all': ['web1', 'web2']}
        try:
            result = run_action('fleet_report', options, task_vars=task_vars)
        except Exception:  # pylint: disable=broad-except
            return _traceback()
        if _mentions_traceback(result):
            return Outcome(failed=True, traceback=repr(result))
        if result.get('failed'):
            left = os.listdir(workdir)
            if left:
                return Outcome(failed=True, traceback='refused, but wrote %s' % left)
            return Outcome(failed=True, message=result.get('msg', '').replace(workdir, '<tmp>'))
        return Outcome(value=result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def egress_base():
    """Valid options of firewalld_egress, ufw_egress and nftables_egress: a default deny with a tunnel destination, DNS to a named
    server (so nothing depends on the machine's resolv.conf), short timeouts."""
    return {'name': 'tw', 'default_deny': True, 'dns_servers': ['198.51.100.253'], 'resolv_conf': '/nonexistent/resolv.conf',
            'rules': [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32'],
                       'ipv6': ['2001:db8:e::11/128']}],
            'extra_allow': [{'protocol': 'tcp', 'port': 443, 'destinations': ['198.51.100.80']}],
            'confirm_timeout': 60, 'lock_timeout': 5,
            # Origins by address and no config read: nothing depends on the machine's files or resolver.
            'origins': [{'host': '198.51.100.12', 'port': 443}], 'cloudflared_config': 'none',
            'private_networks': [{'network': '10.8.0.0/16', 'ports': [53], 'protocol': 'udp'}]}


class _Validated(Exception):
    """Raised in place of everything the module would do once its input is accepted."""


def egress_module_runner(name):
    """firewalld_egress, ufw_egress or nftables_egress in-process, stopped right after egress_module.prepare - the request model, the
    probe's options, what the backend cannot render - so an accepted value never reaches this machine's firewall.

    A refusal must come before the host is read: the module's first host read (the resolvers, in prepare) is
    watched, and a failure after it counts as a late refusal unless it is about DNS.
    """
    def run(options):
        from unittest import mock
        from tests.support.module_runner import run_module
        from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import dns_client, egress_module
        real_prepare, real_read = egress_module.prepare, dns_client.read_resolv_conf
        reads = []

        def read(path):
            reads.append(path)
            return real_read(path)

        def prepare(module, *args, **kwargs):
            request, verify, servers = real_prepare(module, *args, **kwargs)
            module.exit_json(changed=False, request=request._asdict(), nameservers=servers)
        try:
            with mock.patch.object(egress_module, 'prepare', prepare), \
                    mock.patch.object(dns_client, 'read_resolv_conf', read):
                result = run_module(name, options)
        except Exception:  # pylint: disable=broad-except
            return _traceback()
        if _mentions_traceback(result):
            return Outcome(failed=True, traceback=repr(result))
        if result.get('failed'):
            if reads and 'nameserver' not in result.get('msg', ''):
                return Outcome(failed=True, traceback='refused only after reading %s: %s' % (reads, result.get('msg')))
            return Outcome(failed=True, message=result.get('msg', ''))
        return Outcome(value=result['request'])
    return run


ROLE_SPECS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                          'roles', 'egress_firewall', 'meta', 'argument_specs.yml')


def role_base():
    return {'egress_firewall_default_deny': True, 'egress_firewall_dns_servers': ['198.51.100.253'],
            'egress_firewall_extra_allow': [{'protocol': 'tcp', 'port': 443, 'destinations': ['198.51.100.80']}]}


def run_role_spec(variables):
    """The role's variables through its meta/argument_specs.yml, as the role's first, implicit task checks them
    (validate_argument_spec: ansible-core's ArgumentSpecValidator over the entry point's options)."""
    import yaml
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    with open(ROLE_SPECS, encoding='utf-8') as handle:
        options = yaml.safe_load(handle)['argument_specs']['main']['options']
    try:
        result = ArgumentSpecValidator(options).validate(variables)
    except Exception:  # pylint: disable=broad-except
        return _traceback()
    if result.error_messages:
        return Outcome(failed=True, message='; '.join(result.error_messages))
    return Outcome(value=result.validated_parameters)


PLUGINS = {
    'edge_endpoints': Plugin('edge_endpoints', lookup_base, run_lookup_options),
    'edge_probe': Plugin('edge_probe', probe_base, run_edge_probe),
    'edge_probe (targets)': Plugin('edge_probe (targets)', probe_targets_base, run_edge_probe),
    'win_edge_probe': Plugin('win_edge_probe', probe_base, run_win_edge_probe),
    'win_edge_probe (targets)': Plugin('win_edge_probe (targets)', probe_targets_base, run_win_edge_probe),
    'fleet_report': Plugin('fleet_report', fleet_base, run_fleet_report),
    'firewalld_egress': Plugin('firewalld_egress', egress_base, egress_module_runner('firewalld_egress')),
    'ufw_egress': Plugin('ufw_egress', egress_base, egress_module_runner('ufw_egress')),
    'nftables_egress': Plugin('nftables_egress', egress_base, egress_module_runner('nftables_egress')),
    'egress_firewall (role)': Plugin('egress_firewall (role)', role_base, run_role_spec),
}


# The table --------------------------------------------------------------------------------------------------------

def _lookup_rows():
    L = 'edge_endpoints'
    rows = [
        Row(L, 'region', 'wrong type', WRONG_SCALARS, ['global']),
        Row(L, 'region', 'unicode', unicode_text(), 'gl\u00f6bal'),
        Row(L, 'region', 'trailing newline', with_newline('us'), 'us\n'),
        Row(L, 'region', 'empty', st.just(''), ''),
        Row(L, 'generation', 'control characters', with_control('v2'), 'v\x002'),
        Row(L, 'purposes', 'duplicates', st.just(['api', 'api', 'tunnel']), ['api', 'api'], may_pass=True),
        Row(L, 'purposes', 'unicode', st.lists(unicode_text(), min_size=1, max_size=3), ['\u0430pi']),
        Row(L, 'purposes', 'huge', huge(st.sampled_from(['api', 'ssh'])), ['ssh'] * HUGE, may_pass=True),
        Row(L, 'extra_hostnames', 'wrong type', st.lists(st.one_of(st.integers(), st.lists(st.integers())),
                                                         min_size=1, max_size=3), [42]),
        Row(L, 'extra_hostnames[]', 'malformed', st.sampled_from(['a..b', '-', 'a.' * 130 + 'com', '.', 'localhost']),
            'a..b', names='extra_hostnames'),
        Row(L, 'extra_hostnames[]', 'unicode', unicode_text().map(lambda t: t + '.example'), 'b\u00fccher.example',
            names='extra_hostnames'),
        Row(L, 'extra_hostnames[]', 'control characters', with_control('github.com'), 'git\x00hub.com',
            may_pass=True, names='extra_hostnames'),
        Row(L, 'extra_hostnames[]', 'trailing newline', with_newline('github.com'), 'github.com\n', may_pass=True,
            names='extra_hostnames'),
        Row(L, 'extra_hostnames[].port', 'out of range', out_of(1, 65535), 65536, names='extra_hostnames'),
        Row(L, 'extra_hostnames', 'huge', huge(st.sampled_from(['github.com', 'a..b'])), ['a..b'] * HUGE,
            may_pass=True),
        Row(L, 'extra_hostnames', 'duplicates', st.just(['github.com', 'GitHub.com.', {'hostname': 'github.com'}]),
            ['github.com', 'github.com'], may_pass=True),
        Row(L, 'ip_version', 'wrong type', st.sampled_from([4.5, ['4'], {'v': 4}]), 4.5),
        Row(L, 'nameservers', 'IPv6 zone id', ZONED.map(lambda a: [a]), ['fe80::1%eth0']),
        Row(L, 'nameservers', 'unicode', st.lists(unicode_text(), min_size=1, max_size=2), ['\u0661.\u0662.\u0663.\u0664']),
        Row(L, 'nameservers', 'huge', huge(st.sampled_from(['127.0.0.1', 'not-an-ip'])), ['not-an-ip'] * HUGE,
            may_pass=True),
        Row(L, 'nameservers', 'duplicates', st.just(['127.0.0.1', '127.0.0.1']), ['127.0.0.1', '127.0.0.1'],
            may_pass=True),
        Row(L, 'port', 'out of range', out_of(1, 65535), 65536),
        Row(L, 'port', 'wrong type', NOT_INTEGERS, 'fifty-three'),
        Row(L, 'timeout', 'out of range', st.one_of(st.floats(max_value=0), st.floats(min_value=300.001),
                                                    st.just(float('nan'))), 0),
        Row(L, 'timeout', 'huge', st.just(10 ** 400), 10 ** 400),
        Row(L, 'timeout', 'wrong type', NOT_NUMBERS, 'soon'),
        Row(L, 'lifetime', 'out of range', st.floats(min_value=-1e9, max_value=1.99), 1.0, names='lifetime'),
        Row(L, 'tcp', 'wrong type', NOT_BOOLEANS, 'maybe'),
        Row(L, 'dot_server', 'IPv6 zone id', ZONED, 'fe80::1%eth0'),
        Row(L, 'dot_server_name', 'unicode', unicode_text().map(lambda t: t + '.example'), 'cloudfl\u00e4re-dns.com'),
        Row(L, 'dot_server_name', 'trailing newline', with_newline('cloudflare-dns.com'), 'cloudflare-dns.com\n',
            may_pass=True),
        Row(L, 'dot_port', 'out of range', out_of(1, 65535), 0),
        Row(L, 'prefix_v4', 'out of range', out_of(16, 32), 8),
        Row(L, 'prefix_v6', 'out of range', out_of(32, 128), 129),
        Row(L, 'verify_ownership', 'wrong type', NOT_BOOLEANS, 'maybe'),
        Row(L, 'trusted_ranges', 'malformed', st.sampled_from([['198.51.100.1/24'], ['10.0.0.0/33'], ['x']]),
            ['198.51.100.1/24']),
        Row(L, 'trusted_ranges', 'IPv6 zone id', st.just(['2001:db8::%eth0/32']), ['2001:db8::%eth0/32']),
        Row(L, 'trusted_ranges', 'huge', huge(st.sampled_from(['198.51.100.0/24', 'nope'])), ['nope'] * HUGE,
            may_pass=True),
        Row(L, 'on_dns_failure', 'unicode', unicode_text(), 'cat\u00e4log'),
    ]
    return rows


def _probe_rows(plugin):
    P = plugin
    endpoint = 'plan.endpoints[].'
    return [
        Row(P, 'plan', 'wrong type', st.sampled_from([['a'], 42, 'not a dict']), 'not a dict'),
        Row(P, 'plan.version', 'wrong type', st.sampled_from([True, '1', 1.5, None, [1]]), True),
        Row(P, 'plan.endpoints', 'empty', st.sampled_from([[], {}, None, '']), []),
        Row(P, 'plan.endpoints', 'huge', st.just([{'hostname': 'a..b'}] * HUGE), [{'hostname': 'a..b'}] * HUGE),
        Row(P, 'plan.srv_names[]', 'unicode', unicode_text(), '_v2-\u00f6.argotunnel.com'),
        Row(P, endpoint + 'hostname', 'malformed', st.sampled_from(['a..b', '', '.', 'a' * 64 + '.com', None]), 'a..b'),
        Row(P, endpoint + 'hostname', 'unicode', unicode_text().map(lambda t: t + '.com'), 'r\u00e9gion1.com'),
        Row(P, endpoint + 'hostname', 'control characters', with_control('region1.v2.argotunnel.com'),
            'region1\x00.v2.argotunnel.com'),
        Row(P, endpoint + 'hostname', 'trailing newline', with_newline('region1.v2.argotunnel.com'),
            'region1.v2.argotunnel.com\n'),
        Row(P, endpoint + 'port', 'out of range', out_of(1, 65535), 65536),
        Row(P, endpoint + 'port', 'wrong type', st.one_of(st.booleans(), st.text(max_size=5), st.floats(),
                                                          WRONG_SCALARS), '7844'),
        Row(P, endpoint + 'purpose', 'unicode', unicode_text(), 't\u00fcnnel'),
        Row(P, endpoint + 'protocols', 'wrong type', st.sampled_from(['tcp', [], ['sctp'], [1], {'tcp': 1}]), 'tcp'),
        Row(P, endpoint + 'protocols', 'duplicates', st.just(['tcp', 'tcp']), ['tcp', 'tcp'], may_pass=True),
        Row(P, endpoint + 'server_names', 'empty', st.sampled_from([{}, None, {'tcp': ''}]), {}),
        Row(P, endpoint + 'server_names.tcp', 'unicode', unicode_text().map(lambda t: t + '.com'),
            'h2.cft\u00fcnnel.com'),
        Row(P, endpoint + 'server_names.udp', 'control characters', with_control('quic.cftunnel.com'),
            'quic.cftunnel.com\r'),
        Row(P, endpoint + 'ipv4', 'IPv6 zone id', ZONED.map(lambda a: [a]), ['fe80::1%eth0']),
        Row(P, endpoint + 'ipv6', 'IPv6 zone id', ZONED.map(lambda a: [a]), ['fe80::1%eth0']),
        Row(P, endpoint + 'ipv4', 'huge', st.just(['127.0.0.1'] * (HUGE - 1) + ['127.0.0.300']),
            ['127.0.0.1'] * (HUGE - 1) + ['127.0.0.300']),
        Row(P, endpoint + 'ipv4', 'wrong type', st.sampled_from(['127.0.0.1', [2130706433], {'a': 1}]), '127.0.0.1'),
        Row(P, 'timeout', 'out of range', st.one_of(st.floats(max_value=0), st.floats(min_value=120.001),
                                                    st.just(float('nan')), st.just(float('inf'))), 0),
        Row(P, 'timeout', 'wrong type', NOT_NUMBERS, 'soon'),
        Row(P, 'concurrency', 'out of range', st.integers(max_value=0), 0),
        Row(P, 'checks', 'unicode', st.lists(unicode_text(), min_size=1, max_size=2), ['t\u0441p']),
        Row(P, 'checks', 'duplicates', st.just(['tcp', 'tcp']), ['tcp', 'tcp'], may_pass=True),
        Row(P, 'ip_version', 'trailing newline', with_newline('4'), '4\n'),
        Row(P, 'validate_certs', 'wrong type', NOT_BOOLEANS, 'maybe'),
        Row(P, 'ca_path', 'control characters', with_control('/etc/ssl/ca.pem', nul=False), '/etc/ssl/ca\x01.pem'),
        Row(P, 'ca_path', 'control characters', st.just('/etc/ssl/ca\x00.pem'), '/etc/ssl/ca\x00.pem',
            also=('embedded null character',) if P == 'edge_probe' else (),
            note="ansible-core's AnsibleModule fails on a NUL before the module runs (it logs the arguments to "
                 "syslog), with its own message that does not name the option" if P == 'edge_probe' else ''),
        Row(P, 'server_names', 'unicode', unicode_text().map(lambda t: {'tcp': t + '.com'}), {'tcp': 'h\u00e9.com'}),
        Row(P, 'server_names', 'huge', st.just(dict(('h%d.example' % n, 'x.example') for n in range(HUGE))),
            {'h1.example': 'x.example'}),
        Row(P, 'require', 'duplicates', st.just(['dns', 'dns']), ['dns', 'dns'], may_pass=True),
        Row(P, 'require', 'unicode', st.lists(unicode_text(), min_size=1, max_size=2), ['qu\u00efc']),
    ]


def _target_rows(plugin):
    T = plugin
    return [
        Row(T, 'targets', 'empty', st.sampled_from([[], None]), []),
        Row(T, 'targets', 'huge', st.just([{'address': '127.0.0.1', 'port': 65536, 'check': 'tcp'}] * HUGE),
            [{'address': '127.0.0.1', 'port': 65536, 'check': 'tcp'}] * 2),
        Row(T, 'targets[].address', 'IPv6 zone id', ZONED, 'fe80::1%eth0'),
        Row(T, 'targets[].address', 'unicode', unicode_text(), '\u0661\u0662\u0667.0.0.1'),
        Row(T, 'targets[].port', 'out of range', out_of(1, 65535), 65536),
        Row(T, 'targets[].server_name', 'unicode', unicode_text().map(lambda t: t + '.example'), 'b\u00fccher.example'),
        Row(T, 'targets[].server_name', 'trailing newline', with_newline('h2.cftunnel.com'), 'h2.cftunnel.com\n'),
        Row(T, 'targets[].check', 'wrong type', st.sampled_from([['tls'], 7, 'TLS ']), 'TLS '),
    ]


def _fleet_rows():
    F = 'fleet_report'
    return [
        Row(F, 'results', 'wrong type', st.sampled_from([['web1'], 'web1', 42]), ['web1']),
        Row(F, 'results', 'empty', st.sampled_from([{}, '']), {}),
        Row(F, 'results', 'huge', st.just(dict(('web%d' % n, None) for n in range(HUGE))),
            dict(('web%d' % n, None) for n in range(HUGE)), may_pass=True),
        Row(F, 'results.web1', 'wrong type', st.one_of(st.text(max_size=5), st.integers(), st.lists(st.integers())),
            'oops', names='results'),
        Row(F, 'results.web1', 'malformed', st.dictionaries(
            st.sampled_from(['results', 'summary', 'dns', 'failed', 'unreachable', 'recommended_protocol',
                             'unmet_requirements', 'families', 'skipped', 'msg']),
            st.one_of(st.none(), st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2),
                      st.lists(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), max_size=2),
                      st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2)),
            min_size=1), {'results': 'oops'}, may_pass=True, names='results'),
        Row(F, 'probe_var', 'unicode', unicode_text(), 'pr\u00f6be', may_pass=True),
        Row(F, 'probe_var', 'control characters', with_control('probe'), 'pro\x00be'),
        Row(F, 'hosts', 'huge', st.just(['nothere'] * HUGE), ['nothere'] * HUGE),
        Row(F, 'hosts', 'duplicates', st.just(['web1', 'web1']), ['web1', 'web1'], may_pass=True),
        Row(F, 'dest', 'empty', st.just(''), ''),
        Row(F, 'dest', 'control characters', with_control('reports'), 'rep\x00orts'),
        Row(F, 'dest', 'trailing newline', with_newline('reports'), 'reports\n'),
        Row(F, 'formats', 'duplicates', st.just(['json', 'json']), ['json', 'json'], may_pass=True),
        Row(F, 'formats', 'unicode', st.lists(unicode_text(), min_size=1, max_size=2), ['j\u0455on']),
        Row(F, 'formats', 'empty', st.just([]), []),
        Row(F, 'basename', 'unicode', unicode_text(), 'r\u00e9port'),
        Row(F, 'basename', 'trailing newline', with_newline('report'), 'report\n'),
        Row(F, 'basename', 'huge', st.just('r' * HUGE), 'r' * HUGE),
        Row(F, 'basename', 'empty', st.just(''), ''),
        Row(F, 'plan', 'wrong type', st.sampled_from([{'version': True, 'source': 'dns'}, {'version': '1'}, 'plan']),
            {'version': True, 'source': 'dns'}),
    ]


CORE_DICT_NOTE = ("ansible-core's AnsibleModule refuses a value that is no dict before the module runs, with its own "
                  "message (dictionary requested, could not parse JSON or key=value) that does not name the option")


# ansible-core 2.19 to 2.21 (check_type_int) reads a list of three as a decimal.Decimal tuple: [0, [1], 0] passes as
# the integer 1, [2**63, 0, 0] raises OverflowError inside AnsibleModule - for every int option of every module. Not
# this collection's to fix; such lists are left out of the int rows below and the note says so on the page.
DECIMAL_TUPLE_NOTE = ("lists of three are left out: ansible-core's int check reads them as a decimal tuple - "
                      "[0, [1], 0] passes as 1 and [2**63, 0, 0] ends in its own OverflowError")


def not_decimal_tuple(value):
    return not (isinstance(value, list) and len(value) == 3)


def _egress_rows(plugin):
    """The request model's options (egress_request), the same rows for every Linux firewall module."""
    E = plugin
    rule = 'rules[].'
    extra = 'extra_allow[].'
    rows = [
        Row(E, 'name', 'unicode', unicode_text(), 't\u00fcnnelwall'),
        Row(E, 'name', 'trailing newline', with_newline('tw'), 'tw\n'),
        Row(E, 'name', 'control characters', with_control('tw', nul=False), 't\x1bw'),
        Row(E, 'name', 'empty', st.just(''), ''),
        Row(E, 'name', 'huge', st.just('t' * HUGE), 't' * HUGE),
        Row(E, 'name', 'malformed', st.sampled_from(['-tw', 'tw*', 'tw?', 'tw[1]', 'a b', 'tw:x', 'tw.x']), 'tw*'),
        Row(E, 'rules', 'wrong type', st.sampled_from([42, [42], {'purpose': 'tunnel'}]), [42]),
        Row(E, 'rules', 'wrong type', st.sampled_from([['tunnel'], ['tcp/7844']]), ['tunnel'],
            also=('dictionary requested',), note=CORE_DICT_NOTE),
        Row(E, 'rules', 'huge', st.just([{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11']}]
                                        * (HUGE - 1) + [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 0}]),
            [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844}] * 2 + [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 0}],
            names='rules[', note='the last of 10,000 rules has port 0: the message names rules[9999].port'),
        Row(E, 'rules', 'duplicates', st.just([{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844,
                                                'ipv4': ['198.51.100.11/32']}] * 3),
            [{'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11/32']}] * 2, may_pass=True),
        Row(E, rule + 'purpose', 'unicode', unicode_text(), 't\u00fcnnel'),
        Row(E, rule + 'purpose', 'trailing newline', with_newline('tunnel'), 'tunnel\n'),
        Row(E, rule + 'purpose', 'control characters', with_control('tunnel'), 'tun\x00nel'),
        Row(E, rule + 'purpose', 'empty', st.just(''), ''),
        Row(E, rule + 'protocol', 'malformed', st.sampled_from(['sctp', 'TCP', 'tcp\n', '', 'icmp']), 'sctp'),
        Row(E, rule + 'port', 'out of range', out_of(1, 65535), 65536),
        Row(E, rule + 'port', 'wrong type', st.one_of(st.sampled_from(['https', '7844/tcp', '0x1ea4']),
                                                      WRONG_SCALARS).filter(not_decimal_tuple), 'https',
            note=DECIMAL_TUPLE_NOTE),
        Row(E, rule + 'ipv4', 'IPv6 zone id', ZONED.map(lambda a: [a]), ['fe80::1%eth0']),
        Row(E, rule + 'ipv4', 'malformed', st.sampled_from([['198.51.100.1/24'], ['198.51.100.300'], ['0.0.0.0/0'],
                                                           ['2001:db8::1'], ['198.51.100.0/33'], ['']]),
            ['198.51.100.1/24']),
        Row(E, rule + 'ipv4', 'unicode', st.lists(unicode_text(), min_size=1, max_size=2), ['\u0661\u0669\u0668.51.100.1']),
        Row(E, rule + 'ipv4', 'control characters', with_control('198.51.100.11').map(lambda a: [a]), ['198.51.100.11\n']),
        Row(E, rule + 'ipv4', 'huge', st.just(['198.51.100.11'] * (HUGE - 1) + ['198.51.100.256']),
            ['198.51.100.11'] * (HUGE - 1) + ['198.51.100.256']),
        Row(E, rule + 'ipv4', 'duplicates', st.just(['198.51.100.11', '198.51.100.11/32', ' 198.51.100.11']),
            ['198.51.100.11', '198.51.100.11/32'], may_pass=True),
        Row(E, rule + 'ipv6', 'IPv6 zone id', ZONED.map(lambda a: [a]), ['2001:db8::1%1']),
        Row(E, rule + 'ipv6', 'malformed', st.sampled_from([['2001:db8::1/64'], ['::/0'], ['198.51.100.1'], ['2001:db8:::1']]),
            ['2001:db8::1/64']),
        Row(E, extra + 'destinations', 'empty', st.sampled_from([[], None]), [], names='destinations'),
        Row(E, extra + 'destinations', 'IPv6 zone id', ZONED.map(lambda a: [a]), ['fe80::1%eth0']),
        Row(E, extra + 'destinations', 'huge', st.just(['198.51.100.%d' % (n % 250) for n in range(HUGE)]),
            ['198.51.100.1'] * HUGE, may_pass=True, note='10,000 destinations, merged to the distinct ones'),
        Row(E, extra + 'port', 'out of range', out_of(1, 65535), 0),
        Row(E, extra + 'protocol', 'unicode', unicode_text(), 't\u0441p'),
        Row(E, 'default_deny', 'wrong type', NOT_BOOLEANS, 'maybe'),
        Row(E, 'allow_dns', 'wrong type', NOT_BOOLEANS, 'ja'),
        Row(E, 'dns_servers', 'IPv6 zone id', ZONED.map(lambda a: [a]), ['fe80::1%eth0']),
        Row(E, 'dns_servers', 'malformed', st.sampled_from([['198.51.100.0/24'], ['dns.example'], ['198.51.100.253:53']]),
            ['198.51.100.0/24']),
        Row(E, 'dns_servers', 'unicode', st.lists(unicode_text(), min_size=1, max_size=2), ['\uff11.1.1.1']),
        Row(E, 'dns_servers', 'trailing newline', with_newline('198.51.100.253').map(lambda a: [a]), ['198.51.100.253\n']),
        Row(E, 'dns_servers', 'duplicates', st.just(['198.51.100.253'] * 3), ['198.51.100.253'] * 2, may_pass=True),
        Row(E, 'resolv_conf', 'malformed', st.sampled_from(['resolv.conf', 'etc/resolv.conf', './resolv.conf']),
            'resolv.conf'),
        Row(E, 'resolv_conf', 'trailing newline', with_newline('/etc/resolv.conf'), '/etc/resolv.conf\n'),
        # A number once ended in a TypeError inside AnsibleModule (options of a dict option; see egress_spec).
        Row(E, 'verify', 'wrong type', st.sampled_from([42, True, [42], ['plan'], 'yes', 1.5]), 42),
        Row(E, 'verify', 'empty', st.sampled_from([{}, {'timeout': 1.0}, {'plan': None}]), {}),
        Row(E, 'verify', 'malformed', st.sampled_from([{'plan': {}, 'retries': 3}, {'plan': {}, 'require': ['ssh']}]),
            {'plan': {}, 'retries': 3}),
        Row(E, 'verify.timeout', 'out of range', st.one_of(st.floats(max_value=0), st.floats(min_value=120.001),
                                                           st.just(float('nan'))), 0.0, names='timeout'),
        Row(E, 'verify.plan', 'wrong type', st.sampled_from([{'version': True}, {'endpoints': 'x'}]), {'version': True},
            names='plan'),
        Row(E, 'confirm_timeout', 'out of range', out_of(0, 86400), 86401),
        Row(E, 'confirm_timeout', 'wrong type', NOT_INTEGERS.filter(not_decimal_tuple), 'soon', note=DECIMAL_TUPLE_NOTE),
        Row(E, 'lock_timeout', 'out of range', out_of(0, 3600), -1),
        Row(E, 'state', 'unicode', unicode_text(), 'pr\u00e9sent'),
        Row(E, 'state', 'trailing newline', with_newline('present'), 'present\n'),
        # cloudflared's origins: refused by the request model, before any config is read or name resolved.
        Row(E, 'origins[].host', 'malformed', st.sampled_from(['http://app.internal', '0.0.0.0/0', '[2001:db8::1]',
                                                               'app internal', '10.0.0.0/33']),
            'http://app.internal', names='host'),
        Row(E, 'origins[].host', 'control characters', with_control('app.internal'), 'app\x00internal', names='host'),
        Row(E, 'origins[].port', 'out of range', out_of(1, 65535), 0, names='port'),
        Row(E, 'private_networks[].network', 'malformed', st.sampled_from(['10.0.0.1/8', '::/0', 'lan', '10.0.0.0/40']),
            '10.0.0.1/8', names='network'),
        Row(E, 'private_networks[].ports', 'empty', st.just([]), [], names='ports'),
        Row(E, 'cloudflared_config', 'malformed', st.sampled_from(['etc/cloudflared/config.yml', 'yes', '']),
            'etc/cloudflared/config.yml'),
        Row(E, 'cloudflared_config', 'control characters', with_control('/etc/cloudflared/config.yml', nul=False),
            '/etc/cloudflared/config.yml\n'),
    ]
    if plugin == 'firewalld_egress':
        rows.append(Row(E, 'name', 'out of range', st.text('abcdefghijklmnopqrstuvwxyz', min_size=12, max_size=30),
                        'tunnelwall-x', note='firewalld: at most 11 characters (policy names of 18)'))
    if plugin == 'nftables_egress':
        rows.append(Row(E, 'name', 'malformed', st.from_regex(r'[0-9][a-z0-9]{0,8}', fullmatch=True), '1tw',
                        note='nftables: a table name starts with a letter'))
    return rows


def _role_rows():
    R = 'egress_firewall (role)'
    V = 'egress_firewall_'
    return [
        Row(R, V + 'state', 'unicode', unicode_text(), 'pr\u00e9sent'),
        Row(R, V + 'state', 'trailing newline', with_newline('absent'), 'absent\n'),
        Row(R, V + 'backend', 'malformed', st.sampled_from(['iptables', 'UFW', 'firewalld ', 'nft', '']), 'iptables'),
        Row(R, V + 'plan', 'wrong type', st.sampled_from([42, ['rules'], True]), ['rules']),
        Row(R, V + 'lookup_options', 'wrong type', st.sampled_from([42, ['region'], 'region']), 42),
        Row(R, V + 'default_deny', 'wrong type', NOT_BOOLEANS, 'maybe'),
        Row(R, V + 'allow_dns', 'wrong type', NOT_BOOLEANS, 'ja'),
        Row(R, V + 'verify', 'wrong type', NOT_BOOLEANS, 'truee'),
        Row(R, V + 'extra_allow', 'wrong type', st.sampled_from([[42], [True], 42]), [42]),
        Row(R, V + 'extra_allow[].port', 'wrong type', st.sampled_from(['https', [443], {'port': 443}]), 'https',
            names='port'),
        Row(R, V + 'extra_allow[].protocol', 'unicode', unicode_text(), 't\u0441p', names='protocol'),
        Row(R, V + 'extra_allow[].destinations', 'empty', st.just(None), None, names='destinations'),
        Row(R, V + 'probe_timeout', 'wrong type', NOT_NUMBERS, 'fast'),
        Row(R, V + 'confirm_timeout', 'wrong type', NOT_INTEGERS.filter(not_decimal_tuple), 'soon', note=DECIMAL_TUPLE_NOTE),
        Row(R, V + 'purposes', 'wrong type', st.just({'tunnel': 1}), {'tunnel': 1}),
    ]


TABLE = (_lookup_rows() + _probe_rows('edge_probe') + _target_rows('edge_probe (targets)')
         + _probe_rows('win_edge_probe') + _target_rows('win_edge_probe (targets)') + _fleet_rows()
         + _egress_rows('firewalld_egress') + _egress_rows('ufw_egress') + _egress_rows('nftables_egress') + _role_rows())


def options_for(row, value):
    """The options a row's value is tried with: the plugin's valid base, the value in its place."""
    base = PLUGINS[row.plugin].base()
    if row.plugin == 'fleet_report' and row.option in ('probe_var', 'hosts'):
        base.pop('results')
        base.update(probe_var='probe', hosts=['web1'])
    if row.option.startswith('extra_hostnames[]'):
        base['extra_hostnames'] = [{'hostname': 'github.com'}] if row.option.endswith('.port') else ['github.com']
        if row.option.endswith('.port'):
            return dict(base, extra_hostnames=[{'hostname': 'github.com', 'port': value}])
        return dict(base, extra_hostnames=[value])
    if row.option.startswith('verify.'):
        base['verify'] = {'plan': probe_plan(), 'timeout': 1.0}
    if row.plugin == 'fleet_report' and row.option == 'results.web1':
        return dict(base, results={'web1': value})
    return row.place(base, value)


def problem(row, outcome):
    """Why ``outcome`` breaks the rule for ``row``; None when it keeps it."""
    if outcome.traceback:
        return 'traceback:\n%s' % outcome.traceback
    if outcome.failed:
        if not any(word in outcome.message for word in (row.named,) + row.also):
            return 'the error does not name %s: %s' % (row.named, outcome.message[:500])
        return None
    if not row.may_pass:
        return 'accepted a bad value'
    return None
