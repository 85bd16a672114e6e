# -*- coding: utf-8 -*-
"""The lookup's rows of the bad-input table through its real run(), with a real DNS server, and a sample through
ansible-playbook: the same clear errors (or a plan), no traceback, and no query sent for a refused value."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible.errors import AnsibleError

from tests.integration.conftest import LAB_TRUST
from tests.unit.properties.bad_inputs import TABLE, options_for

ROWS = [row for row in TABLE if row.plugin == 'edge_endpoints']


def row_id(row):
    return '%s:%s' % (row.option, row.kind)


@pytest.mark.parametrize('row', ROWS, ids=row_id)
def test_through_run(edge_endpoints, dns, tmp_path, row):
    options = options_for(row, row.example)
    options.update(nameservers=[dns.address], port=options['port'] if row.option == 'port' else dns.port,
                   trusted_ranges=options['trusted_ranges'] if row.option == 'trusted_ranges' else LAB_TRUST,
                   cache_dir=str(tmp_path / 'cache'))
    if row.option not in ('timeout', 'lifetime'):
        options.update(timeout=1, lifetime=2)
    for name in ('nameservers', 'dot_server'):
        if row.option == name:
            options[name] = row.example
    try:
        plan = edge_endpoints.run([], variables={}, **options)[0]
    except AnsibleError as error:
        assert row.named in str(error), str(error)
        assert dns.queries() == [], 'a refused value cost a DNS query'
        return
    assert row.may_pass, 'accepted %r' % (row.example,)
    assert plan['version'] == 1 and plan['endpoints']


@pytest.mark.parametrize('cache_dir, warning', [('with\x00nul', 'embedded null'), ('/proc/forbidden', 'ignoring the plan cache')])
def test_a_cache_dir_that_cannot_be_used_is_a_warning(lookup, warnings, cache_dir, warning):
    plan = lookup(cache_dir=cache_dir)
    assert plan['version'] == 1
    assert any(warning in w for w in warnings), warnings


SAMPLE = [('port', 65536), ('timeout', 10 ** 400), ('nameservers', ['fe80::1%eth0']), ('tcp', 'maybe'),
          ('extra_hostnames', ['b\u00fccher.example']), ('trusted_ranges', ['2001:db8::%eth0/32'])]


def lookup_call(dns, option, value):
    arguments = {'nameservers': json.dumps([dns.address]), 'port': str(dns.port)}
    # timeout=10**400 as the integer literal a user would type; the rest as JSON, which Jinja reads too.
    arguments[option] = str(value) if option == 'timeout' else json.dumps(value)
    return "{{ lookup('tunnelwall.cloudflared.edge_endpoints', %s) }}" % ', '.join(
        '%s=%s' % item for item in sorted(arguments.items()))


def test_a_sample_through_ansible_playbook(dns, tmp_path):
    tasks = [{'name': 'case %d' % index, 'ansible.builtin.set_fact': {'plan': lookup_call(dns, option, value)},
              'ignore_errors': True, 'register': 'case%d' % index} for index, (option, value) in enumerate(SAMPLE)]
    tasks.append({'ansible.builtin.copy': {'content': '{{ [%s] | to_json }}' % ', '.join(
        'case%d' % index for index in range(len(SAMPLE))), 'dest': str(tmp_path / 'results.json'), 'mode': '0600'}})
    (tmp_path / 'play.yml').write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]))
    process = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), str(tmp_path / 'play.yml')],
        capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, ANSIBLE_HOME=str(tmp_path / 'home'), ANSIBLE_LOCALHOST_WARNING='False', ANSIBLE_NOCOLOR='1'))
    assert process.returncode == 0, process.stdout + process.stderr
    assert 'Traceback' not in process.stdout + process.stderr
    results = json.loads((tmp_path / 'results.json').read_text())
    for (option, value), result in zip(SAMPLE, results):
        assert result['failed'] is True, (option, result)
        assert option in result['msg'], (option, result['msg'])
    assert dns.queries() == []
