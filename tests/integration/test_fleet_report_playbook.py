# -*- coding: utf-8 -*-
"""fleet_report as users run it: ansible-playbook in a subprocess, over a small fleet.

(Not test_fleet_report.py: pytest would take it for the unit test of the same name.)

The fleet: two hosts that run the real edge_probe against loopback (one port
that listens, one that refuses), one host that cannot be reached at all (ssh
to a closed loopback port), and two whose results were recorded from the real
probe report (probe_report.report) and are set with set_fact.
"""

from __future__ import annotations

import html.parser
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.unit.plugins.plugin_utils.test_fleet_report import PLAN, probed, udp_dropped

pytestmark = pytest.mark.playbook
BIN = os.path.dirname(sys.executable)

PLAYBOOK = '''
- hosts: fleet
  gather_facts: false
  tasks:
    - name: Probe loopback for real
      tunnelwall.cloudflared.edge_probe:
        targets: "{{ probe_targets }}"
        timeout: 2
      register: probe
      ignore_errors: true
      when: probe_targets is defined

    - name: Results recorded from the probe report
      ansible.builtin.set_fact:
        probe: "{{ recorded[inventory_hostname] }}"
      when: inventory_hostname in recorded

    - name: Write the fleet report
      tunnelwall.cloudflared.fleet_report:
        probe_var: probe
        plan: "{{ plan }}"
        dest: "{{ report_dir }}"
      register: fleet

    - name: Keep the summary as a job artifact
      ansible.builtin.set_stats:
        data:
          tunnelwall_fleet: "{{ fleet.stats }}"

    - name: Hand the task result to the test
      ansible.builtin.copy:
        content: "{{ fleet | to_json }}"
        dest: "{{ result_file }}"
        mode: '0644'
      delegate_to: localhost
      run_once: true
      check_mode: false
'''


def ansible(tool, *args, env=None):
    """Run an Ansible command of the venv under test, as a user would."""
    environment = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', **(env or {}))
    return subprocess.run([os.path.join(BIN, tool), *args], capture_output=True, text=True, env=environment,
                          timeout=300, check=False)


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def listener():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def fleet_run(tmp_path, listener):
    """Write the inventory, playbook and variables; return a function that runs the play and reads its result."""
    def target(port):
        return [{'address': '127.0.0.1', 'port': port, 'check': 'tcp', 'purpose': 'tunnel'}]
    local = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
    inventory = {'all': {'children': {'fleet': {'hosts': {
        'web-ok': dict(local, probe_targets=target(listener)),
        'web-refused': dict(local, probe_targets=target(closed_port())),
        'down1': {'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1', 'ansible_port': closed_port(),
                  'ansible_user': 'nobody', 'ansible_ssh_common_args': '-o ConnectTimeout=3 -o BatchMode=yes',
                  'probe_targets': target(listener)},
        'rec-quic': dict(local),
        'rec-udp-blocked': dict(local),
    }}}}}
    (tmp_path / 'hosts.yml').write_text(json.dumps(inventory))
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    home = {'ANSIBLE_HOME': str(tmp_path / 'ansible-home'), 'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'ansible-home/tmp'),
            'ANSIBLE_SHOW_CUSTOM_STATS': 'True', 'ANSIBLE_HOST_KEY_CHECKING': 'False'}

    def run(*options, recorded=None, report_dir=None):
        variables = {
            'recorded': recorded if recorded is not None else {
                'rec-quic': probed(), 'rec-udp-blocked': probed(udp_dropped, require=['any_tunnel', 'quic'])},
            'plan': PLAN, 'report_dir': str(report_dir or tmp_path / 'reports'),
            'result_file': str(tmp_path / 'result.json')}
        (tmp_path / 'vars.json').write_text(json.dumps(variables))
        if (tmp_path / 'result.json').exists():
            (tmp_path / 'result.json').unlink()
        process = ansible('ansible-playbook', '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / 'play.yml'),
                          '-e', '@%s' % (tmp_path / 'vars.json'), *options, env=home)
        # 4: a host was unreachable (down1, on purpose); anything else is a failure.
        assert process.returncode == 4, process.stdout + process.stderr
        assert 'unreachable=1' in process.stdout
        return process, json.loads((tmp_path / 'result.json').read_text())
    return run


def files_of(directory):
    return dict((name, (directory / name).read_text()) for name in sorted(os.listdir(directory)))


class Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def test_the_report_of_a_fleet_then_a_rerun_changes_nothing(fleet_run, tmp_path):
    process, result = fleet_run()
    assert result['changed'] is True and result['updated'] == ['markdown', 'html', 'json']
    reports = tmp_path / 'reports'
    assert result['paths'] == dict((name, str(reports / ('tunnelwall-fleet-report' + ext)))
                                   for name, ext in (('markdown', '.md'), ('html', '.html'), ('json', '.json')))
    files = files_of(reports)
    assert sorted(files) == ['tunnelwall-fleet-report.html', 'tunnelwall-fleet-report.json', 'tunnelwall-fleet-report.md']

    report = json.loads(files['tunnelwall-fleet-report.json'])
    rows = dict((row['host'], row) for row in report['rows'])
    assert sorted(rows) == sorted(['web-ok', 'web-refused', 'down1', 'rec-quic', 'rec-udp-blocked'])
    severity = [('failing', 'unreachable', 'degraded', 'ok').index(row['state']) for row in report['rows']]
    assert severity == sorted(severity), 'worst first'
    assert report['totals'] == {'hosts': 5, 'ok': 2, 'degraded': 0, 'failing': 2, 'unreachable': 1, 'drifted': 0}
    # The real probes: TCP 7844 over IPv4, one answered, one refused.
    assert rows['web-ok']['state'] == 'ok' and rows['web-ok']['protocol'] == 'http2'
    assert rows['web-ok']['cells']['tcp_ipv4'] == {'state': 'ok', 'text': '1/1'}
    assert rows['web-refused']['state'] == 'failing' and rows['web-refused']['protocol'] == 'none'
    assert rows['web-refused']['cells']['tcp_ipv4'] == {'state': 'failed', 'text': '0/1', 'errors': {'refused': 1}}
    [entry] = rows['web-refused']['to_open']
    assert (entry['purpose'], entry['protocol'], entry['destinations']) == ('tunnel', 'tcp', ['127.0.0.1/32'])  # aggregated, as the plan's rules are
    fix = 'open outbound TCP %d to 127.0.0.1/32 (tunnel)' % entry['port']
    assert rows['web-ok']['cells']['quic_ipv4']['state'] == 'skipped'
    assert rows['down1']['state'] == 'unreachable' and rows['down1']['message'], rows['down1']
    assert rows['rec-udp-blocked']['failing'] == ['quic_ipv4', 'quic_ipv6']
    assert report['plan']['source'] == 'dns'
    assert report == result['report']

    markdown = files['tunnelwall-fleet-report.md']
    assert '**5 hosts: 2 ok, 0 degraded, 2 failing, 1 unreachable**' in markdown
    for host in ('web-ok', 'web-refused', 'down1', 'rec-quic', 'rec-udp-blocked'):
        assert '| %s |' % host in markdown
    assert '### down1: ⛔ unreachable' in markdown
    parser = Text()
    parser.feed(files['tunnelwall-fleet-report.html'])
    text = ''.join(parser.parts)
    assert 'To open: %s' % fix in text and '5 hosts' in text

    # set_stats got the compact summary (ANSIBLE_SHOW_CUSTOM_STATS prints it at the end of the run).
    assert result['stats']['hosts']['web-refused'] == {
        'state': 'failing', 'protocol': 'none', 'failing': ['tcp_ipv4'], 'to_open': [entry],
        'settings': {'protocol': None, 'edge_ip_version': None}}
    assert result['stats']['hosts']['web-ok']['settings'] == {'protocol': 'http2', 'edge_ip_version': '4'}
    custom = process.stdout.split('CUSTOM STATS', 1)[1]
    assert 'tunnelwall_fleet' in custom and 'rec-udp-blocked' in custom and 'quic_ipv4' in custom

    # The same fleet again: the files are left as they are (time stamps aside, nothing differs).
    mtimes = dict((name, os.stat(reports / name).st_mtime_ns) for name in files)
    process, again = fleet_run()
    assert again['changed'] is False and again['updated'] == [], again['msg']
    assert 'up to date' in again['msg']
    assert files_of(reports) == files
    assert dict((name, os.stat(reports / name).st_mtime_ns) for name in files) == mtimes
    assert again['report']['generated_at'] >= report['generated_at']

    # A host changed: check mode with diff says what would change and writes nothing.
    recorded = {'rec-quic': probed(udp_dropped), 'rec-udp-blocked': probed(udp_dropped)}
    process, checked = fleet_run('--check', '--diff', recorded=recorded)
    assert checked['changed'] is True and checked['updated'] == ['markdown', 'html', 'json']
    assert checked['msg'].startswith('5 hosts: 1 ok, 2 degraded, 1 failing, 1 unreachable; would write ')
    assert files_of(reports) == files
    assert '+++ after: %s' % (reports / 'tunnelwall-fleet-report.md') in process.stdout
    assert '+| rec-quic | ⚠️ degraded | QUIC 7844 IPv4: 0/4 answered, 4 timeout | http2 | --protocol http2 --edge-ip-version auto |' \
        in process.stdout


def test_check_mode_writes_nothing(fleet_run, tmp_path):
    dest = tmp_path / 'new' / 'reports'
    process, result = fleet_run('--check', report_dir=dest)
    assert result['changed'] is True and 'would write %s' % (dest / 'tunnelwall-fleet-report.md') in result['msg']
    assert not (tmp_path / 'new').exists()
    assert 'changed: [web-ok]' in process.stdout and result['report']['totals']['hosts'] == 5


BAD_OPTIONS = [
    ({'results': {'web1': None}, 'formats': ['markdown', 'pdf']}, 'formats', 'pdf'),
    ({'results': {'web1': None}, 'probe_var': 'probe'}, 'mutually exclusive', 'results'),
    ({}, 'one of the following is required', 'probe_var'),
    ({'results': {'web1': 'oops'}}, "results['web1']", "got str 'oops'"),
    ({'results': {}}, 'results: empty', ''),
    ({'results': {'web1': None}, 'basename': '../escape'}, "basename='../escape'", 'without directory'),
    ({'results': {'web1': None}, 'formats': []}, 'formats: empty', 'markdown, html, json'),
    ({'results': {'web1': None}, 'plan': {'version': 2}}, 'plan:', 'edge_endpoints'),
    ({'probe_var': 'probe', 'hosts': ['nothere']}, "'nothere' is not in the inventory", ''),
    ({'probe_var': 'not a name'}, "probe_var='not a name'", ''),
    ({'results': {'web1': None}, 'hosts': ['web1']}, 'hosts', 'probe_var'),
    ({'results': {'web1': None}, 'colour': 'red'}, 'unsupported option colour', 'Supported parameters include'),
]


def test_bad_options_fail_with_a_clear_message_and_write_nothing(tmp_path):
    dest = tmp_path / 'reports'
    tasks = []
    for index, case in enumerate(BAD_OPTIONS):
        tasks.append({'name': 'case %d' % index, 'tunnelwall.cloudflared.fleet_report': dict(case[0], dest=str(dest)),
                      'register': 'case%d' % index, 'ignore_errors': True})
    # dest is an existing file: named as such.
    (tmp_path / 'a-file').write_text('x')
    tasks.append({'name': 'dest is a file', 'tunnelwall.cloudflared.fleet_report': {
        'results': {'web1': None}, 'dest': str(tmp_path / 'a-file')}, 'register': 'file_case', 'ignore_errors': True})
    # And one good call with results given directly: only the JSON file, under its own name.
    tasks.append({'name': 'results given directly', 'tunnelwall.cloudflared.fleet_report': {
        'results': {'a': probed(), 'b': None}, 'formats': ['json'], 'basename': 'only-json', 'dest': str(tmp_path / 'good')},
        'register': 'good'})
    names = ['case%d' % index for index in range(len(BAD_OPTIONS))] + ['file_case', 'good']
    tasks.append({'name': 'Hand the results to the test', 'ansible.builtin.copy': {
        'content': '{{ [%s] | to_json }}' % ', '.join(names), 'dest': str(tmp_path / 'results.json'), 'mode': '0644'}})
    (tmp_path / 'play.yml').write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]))
    process = ansible('ansible-playbook', str(tmp_path / 'play.yml'),
                      env={'ANSIBLE_HOME': str(tmp_path / 'home'), 'ANSIBLE_LOCALHOST_WARNING': 'False'})
    assert process.returncode == 0, process.stdout + process.stderr
    results = json.loads((tmp_path / 'results.json').read_text())
    good = results.pop()
    assert good['changed'] is True and good['paths'] == {'json': str(tmp_path / 'good' / 'only-json.json')}
    assert os.listdir(tmp_path / 'good') == ['only-json.json']
    assert [(row['host'], row['state']) for row in good['report']['rows']] == [('b', 'unreachable'), ('a', 'ok')]
    assert len(results) == len(BAD_OPTIONS) + 1
    for (options, first, second), result in zip(BAD_OPTIONS + [({}, 'not a directory', 'a-file')], results):
        assert result['failed'] is True, (options, result)
        assert result['msg'].startswith('fleet_report: ') and first in result['msg'] and second in result['msg'], \
            (options, result['msg'])
        assert 'report' not in result
    assert not dest.exists()


def test_ansible_doc_renders_the_action():
    result = ansible('ansible-doc', 'tunnelwall.cloudflared.fleet_report')
    assert result.returncode == 0, result.stderr
    for text in ('probe_var', 'ansible_play_hosts_all', 'tunnelwall-fleet-report', 'ansible.builtin.set_stats:',
                 'EXAMPLES', 'RETURN VALUES', 'stats'):
        assert text in result.stdout, text
