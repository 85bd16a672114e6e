# -*- coding: utf-8 -*-
"""nftables_egress's backend and transaction against the real nft, in a throwaway network namespace of the test's own.

No lab needed: every nft command runs through ``nsenter`` into a namespace that only this test uses (the machine's
own ruleset is never listed or changed - a test proves it), and the files go to a temporary directory. Packets are
proved in the lab (test_nftables_egress_lab.py); here: what nft holds, idempotence, check mode and diff, rotation,
another table, absent, a failed verification and the dead-man revert after a SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request, egress_transaction, nftables_apply

# Nothing here goes through ansible-core: `make test` runs it in the latest venv only (see the Makefile).
pytestmark = pytest.mark.once

NFT = '/usr/sbin/nft'
BINARIES = {'nft': NFT, 'unshare': '/usr/bin/unshare'}
TUNNEL = [{'purpose': 'tunnel', 'protocol': 'udp', 'port': 7844, 'ipv4': ['198.51.100.11', '198.51.100.12'], 'ipv6': ['2001:db8:e::11']},
          {'purpose': 'tunnel', 'protocol': 'tcp', 'port': 7844, 'ipv4': ['198.51.100.11', '198.51.100.12'], 'ipv6': []}]
OTHER_TABLE = 'table ip other {\n\tchain output {\n\t\ttype filter hook output priority 10; policy accept;\n\t\tip daddr 203.0.113.9 drop\n\t}\n}\n'


class Sandbox:
    """A network namespace (held by a sleeping process) and a directory standing in for /etc and /run."""

    def __init__(self, root):
        self.holder = subprocess.Popen(['unshare', '--net', 'sleep', 'infinity'])
        self.prefix = ['nsenter', '--net=/proc/%d/ns/net' % self.holder.pid]
        self.root = str(root)
        self.config_dir = os.path.join(self.root, 'etc', 'nftables.d')
        self.systemd_dir = os.path.join(self.root, 'etc', 'systemd', 'system')
        self.run_dir = os.path.join(self.root, 'run')
        os.makedirs(self.systemd_dir)
        deadline = time.monotonic() + 5
        while os.readlink('/proc/%d/ns/net' % self.holder.pid) == os.readlink('/proc/self/ns/net'):
            assert time.monotonic() < deadline, 'unshare --net did not start'
            time.sleep(0.01)

    def run(self, argv, data=None):
        process = subprocess.run(self.prefix + list(argv), input=data, capture_output=True, text=True, check=False)
        return process.returncode, process.stdout, process.stderr

    def ruleset(self):
        rc, out, err = self.run([NFT, 'list', 'ruleset'])
        assert rc == 0, err
        return out

    def files(self):
        found = {}
        for directory, dummy, names in os.walk(os.path.join(self.root, 'etc')):
            for name in names:
                with open(os.path.join(directory, name), encoding='utf-8') as handle:
                    found[os.path.relpath(os.path.join(directory, name), self.root)] = handle.read()
        return found

    def state(self):
        return self.ruleset(), self.files()

    def backend(self, request, nameservers=()):
        return nftables_apply.NftablesBackend(request, list(nameservers), self.run, BINARIES, self.config_dir,
                                              self.systemd_dir)

    def change(self, params, check_mode=False, verify=None):
        request = egress_request.build(dict({'confirm_timeout': 0}, **params), 'nftables')
        backend = self.backend(request, egress_request.nameservers(request, [], []))  # dns_servers, as the module does
        outcome = egress_transaction.run(backend, request, verify, check_mode, run_dir=self.run_dir, command=self.run)
        return dict(nftables_apply.result(backend, outcome['changed'], check_mode, True), transaction=outcome['transaction'])

    def close(self):
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def sandbox(tmp_path):
    if os.geteuid() != 0:
        pytest.fail('these tests need root (a network namespace and nft): run them as root', pytrace=False)
    box = Sandbox(tmp_path)
    machine = subprocess.run([NFT, 'list', 'ruleset'], capture_output=True, text=True, check=True).stdout
    yield box
    box.close()
    assert subprocess.run([NFT, 'list', 'ruleset'], capture_output=True, text=True, check=True).stdout == machine


def test_first_run_changes_the_second_nothing_and_check_mode_and_diff_say_the_same(sandbox):
    params = {'rules': TUNNEL, 'default_deny': True, 'dns_servers': ['198.51.100.253']}
    before = sandbox.state()
    checked = sandbox.change(params, check_mode=True)
    assert sandbox.state() == before  # check mode wrote nothing
    applied = sandbox.change(params)
    assert checked['changed'] and applied['changed']
    assert checked['diff'] == applied['diff']  # byte-identical: both are what nft lists
    assert checked['files'] == applied['files'] == sorted(os.path.join(sandbox.root, f) for f in (
        'etc/nftables.d/tunnelwall-egress.nft', 'etc/systemd/system/tunnelwall-nftables-tunnelwall.service',
        'etc/systemd/system/sysinit.target.d/tunnelwall-nftables-tunnelwall.conf'))
    assert applied['diff']['before'] == '' and applied['diff']['after'] in sandbox.ruleset()
    assert applied['sets'] == ['dns_tcp_53_v4', 'dns_udp_53_v4', 'tunnel_tcp_7844_v4', 'tunnel_udp_7844_v4', 'tunnel_udp_7844_v6']
    assert applied['rule_count'] == 14 and applied['table'] == 'inet tunnelwall'
    assert [c[0] for c in applied['commands']] == [NFT, 'write', 'write', 'write', NFT]
    again = sandbox.change(params)
    assert not again['changed'] and again['commands'] == [] and again['files'] == []
    assert sandbox.change(params, check_mode=True)['changed'] is False


def test_the_boot_file_alone_rebuilds_the_table(sandbox):
    sandbox.change({'rules': TUNNEL, 'default_deny': True, 'dns_servers': ['198.51.100.253']})
    live = sandbox.ruleset()
    assert sandbox.run([NFT, 'flush', 'ruleset'])[0] == 0  # a reboot
    path = os.path.join(sandbox.config_dir, 'tunnelwall-egress.nft')
    assert sandbox.run([NFT, '-f', path])[0] == 0  # what the unit's ExecStart does
    assert sandbox.ruleset() == live
    assert sandbox.run([NFT, '-f', path])[0] == 0  # and loading it twice gives the same table
    assert sandbox.ruleset() == live


def test_a_hand_edit_of_the_table_or_of_a_file_is_a_change(sandbox):
    params = {'rules': TUNNEL}
    sandbox.change(params)
    assert sandbox.run([NFT, 'add', 'element', 'inet', 'tunnelwall', 'tunnel_tcp_7844_v4', '{ 203.0.113.66 }'])[0] == 0
    repaired = sandbox.change(params)
    assert repaired['changed'] and '203.0.113.66' in repaired['diff']['before'] and '203.0.113.66' not in repaired['diff']['after']
    assert repaired['files'] == []  # the files were right; only the table is reloaded
    unit = os.path.join(sandbox.systemd_dir, 'tunnelwall-nftables-tunnelwall.service')
    with open(unit, 'a', encoding='utf-8') as handle:
        handle.write('ExecStartPost=/bin/true\n')
    assert sandbox.change(params)['files'] == [unit]
    assert not sandbox.change(params)['changed']


def test_rotation_prunes_and_another_table_survives_everything(sandbox):
    assert sandbox.run([NFT, '-f', '-'], data=OTHER_TABLE)[0] == 0
    other = sandbox.run([NFT, 'list', 'table', 'ip', 'other'])[1]
    sandbox.change({'rules': TUNNEL, 'default_deny': True, 'dns_servers': ['198.51.100.253']})
    rotated = [dict(r, ipv4=['198.51.100.111'], ipv6=[]) for r in TUNNEL]
    result = sandbox.change({'rules': rotated, 'default_deny': True, 'dns_servers': ['198.51.100.253']})
    live = sandbox.run([NFT, 'list', 'table', 'inet', 'tunnelwall'])[1]
    assert '198.51.100.111' in live and '198.51.100.11,' not in live and '198.51.100.12' not in live
    assert 'tunnel_udp_7844_v6' not in live and 'tunnel_udp_7844_v6' in result['diff']['before']
    # added and removed: the one shape of every backend (egress_applied.rule_changes), one item per destination.
    assert result['added'] == [{'purpose': 'tunnel', 'family': 'ipv4', 'protocol': protocol, 'port': 7844,
                                'destination': '198.51.100.111'} for protocol in ('tcp', 'udp')]
    assert {(r['family'], r['protocol']) for r in result['removed']} == {('ipv4', 'tcp'), ('ipv4', 'udp'), ('ipv6', 'udp')}
    assert '2001:db8:e::11' in {r['destination'] for r in result['removed']}
    assert all(r['purpose'] == 'tunnel' and r['port'] == 7844 for r in result['removed'])
    assert sandbox.run([NFT, 'list', 'table', 'ip', 'other'])[1] == other
    sandbox.change({'state': 'absent'})
    assert sandbox.run([NFT, 'list', 'table', 'ip', 'other'])[1] == other


def test_absent_gives_back_exactly_the_state_before(sandbox):
    assert sandbox.run([NFT, '-f', '-'], data=OTHER_TABLE)[0] == 0
    before = sandbox.state()
    sandbox.change({'rules': TUNNEL, 'default_deny': True, 'dns_servers': ['198.51.100.253']})
    assert sandbox.state() != before
    removed = sandbox.change({'state': 'absent'})
    assert removed['changed'] and removed['sets'] == [] and removed['rule_count'] == 0
    assert removed['diff']['after'] == ''
    assert sandbox.state() == before
    assert not sandbox.change({'state': 'absent'})['changed']


def test_a_failed_verification_restores_the_previous_table_and_files(sandbox):
    first = {'rules': TUNNEL, 'dns_servers': ['198.51.100.253'], 'default_deny': True}
    sandbox.change(first)
    before = sandbox.state()

    def verify():
        assert '198.51.100.111' in sandbox.ruleset()  # judged while the new table is live
        return False, {'unmet_requirements': ['any_tunnel']}, 'no tunnel protocol reached the edge'
    rotated = [dict(r, ipv4=['198.51.100.111']) for r in TUNNEL]
    with pytest.raises(egress_transaction.EgressError) as raised:
        sandbox.change(dict(first, rules=rotated), verify=verify)
    assert 'Rolled back: the firewall is as before this run' in str(raised.value)
    assert raised.value.details['rolled_back'] is True
    assert sandbox.state() == before


def test_a_first_change_that_fails_verification_leaves_no_table_and_no_file(sandbox):
    before = sandbox.state()
    with pytest.raises(egress_transaction.EgressError):
        sandbox.change({'rules': TUNNEL, 'default_deny': True, 'dns_servers': ['198.51.100.253']},
                       verify=lambda: (False, {}, 'unreachable'))
    assert sandbox.state() == before


def test_a_name_nft_cannot_use_is_refused_before_anything_changes(sandbox):
    before = sandbox.state()
    with pytest.raises(egress_transaction.EgressError) as raised:
        sandbox.change({'name': 'counter', 'rules': TUNNEL})
    assert str(raised.value).startswith("name='counter': nft cannot use it as a table name (a keyword of its language?): "
                                        "Error: syntax error, unexpected counter")
    assert str(raised.value).endswith('nothing was changed')
    assert sandbox.state() == before


KILLED_RUN = textwrap.dedent('''
    import sys, time
    from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request, egress_transaction, nftables_apply
    from tests.integration_lab.test_nftables_backend import BINARIES, TUNNEL
    import subprocess
    def run(argv, data=None):
        p = subprocess.run(argv, input=data, capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr
    config_dir, systemd_dir, run_dir = sys.argv[1:4]
    boot_dirs = (sys.argv[4], systemd_dir) if len(sys.argv) > 4 else None
    request = egress_request.build({'rules': TUNNEL, 'default_deny': True, 'dns_servers': ['198.51.100.253'],
                                    'confirm_timeout': 2}, 'nftables')
    backend = nftables_apply.NftablesBackend(request, ['198.51.100.253'], run, BINARIES, config_dir, systemd_dir)
    def verify():
        print('verifying', flush=True)
        time.sleep(600)
    egress_transaction.run(backend, request, verify, False, run_dir=run_dir, command=run, boot_dirs=boot_dirs)
''')


def test_a_sigkilled_run_is_undone_by_the_dead_man_revert(sandbox):
    """The transaction runs in the sandbox's namespace (so does the revert it starts); SIGKILL while verifying."""
    before = sandbox.state()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen(sandbox.prefix + [sys.executable, '-c', KILLED_RUN, sandbox.config_dir, sandbox.systemd_dir,
                                                 sandbox.run_dir], stdout=subprocess.PIPE, text=True, env=env,
                               cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert process.stdout.readline() == 'verifying\n'
    record = json.loads(open(os.path.join(sandbox.config_dir, 'tunnelwall-pending.json'), encoding='utf-8').read())
    assert record['armed']['how'] == 'process' and record['applied']
    assert 'tunnelwall' in sandbox.ruleset()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 15
    while os.path.exists(os.path.join(sandbox.config_dir, 'tunnelwall-pending.json')):
        assert time.monotonic() < deadline, 'the dead-man revert did not restore'
        time.sleep(0.1)
    assert sandbox.state() == before
    with open(os.path.join(sandbox.run_dir, 'revert.log'), encoding='utf-8') as log:
        assert 'dead-man revert of %s: restored' % record['id'] in log.read()


ADDRESSES = st.one_of(
    st.builds(lambda a, n: '%s/%d' % (egress_request.ipaddress.ip_network('%s/%d' % (a, n), strict=False).network_address, n),
              st.ip_addresses(v=4).map(str), st.integers(8, 32)),
    st.builds(lambda a, n: '%s/%d' % (egress_request.ipaddress.ip_network('%s/%d' % (a, n), strict=False).network_address, n),
              st.ip_addresses(v=6).map(str), st.integers(16, 128)))
RULES = st.lists(st.fixed_dictionaries({
    'purpose': st.sampled_from(['tunnel', 'api', 'update', 'extra', 'x_1']), 'protocol': st.sampled_from(['tcp', 'udp']),
    'port': st.integers(1, 65535), 'destinations': st.lists(ADDRESSES, min_size=1, max_size=12)}), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=RULES, deny=st.booleans(), mld=st.booleans(), dhcp=st.booleans(), metadata=st.booleans())
def test_any_valid_request_loads_and_a_second_run_changes_nothing(sandbox, rules, deny, mld, dhcp, metadata):
    """Random destinations (overlapping, nested, any prefix) and options: nft takes the table and it is stable."""
    plan = [{'purpose': r['purpose'], 'protocol': r['protocol'], 'port': r['port'],
             'ipv4': [d for d in r['destinations'] if ':' not in d], 'ipv6': [d for d in r['destinations'] if ':' in d]}
            for r in rules]
    plan.append(TUNNEL[0])
    params = {'rules': plan, 'default_deny': deny, 'allow_mld': mld, 'allow_dhcp': dhcp, 'allow_metadata': metadata,
              'dns_servers': ['198.51.100.253', '2001:db8:e::253']}
    assert sandbox.change(params, check_mode=True)['changed'] is True or sandbox.state()[1]
    sandbox.change(params)
    assert not sandbox.change(params)['changed']
    sandbox.change({'state': 'absent'})
    assert 'tunnelwall' not in sandbox.ruleset()


PEER = '198.51.100.250'  # a second namespace of the test's own, on a veth: loopback would be accepted as such
CLIENT = textwrap.dedent('''
    import socket, sys
    old = socket.create_connection((sys.argv[1], 9999), timeout=2)
    old.sendall(b'one'); assert old.recv(10) == b'one'
    print('connected', flush=True)
    sys.stdin.readline()  # the default deny is loaded now
    outcome = {}
    try:
        old.sendall(b'two'); outcome['old'] = old.recv(10).decode()
    except OSError as error:
        outcome['old'] = str(error)
    try:
        socket.create_connection((sys.argv[1], 9999), timeout=2); outcome['new'] = 'connected'
    except OSError as error:
        outcome['new'] = error.__class__.__name__
    print(outcome, flush=True)
''')
SERVER = textwrap.dedent('''
    import socket, threading
    server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(('%s', 9999)); server.listen(5)
    def echo(conn):
        while True:
            data = conn.recv(100)
            if not data: return
            conn.sendall(data)
    while True:
        threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()
''' % PEER)


def test_a_connection_opened_before_conntrack_was_on_survives_the_default_deny(sandbox):
    """On a host without any firewall, connection tracking starts with our table: the Ansible session that runs the
    module was opened before and is picked up mid-stream (its next packet is `ct state new`). It must live on, while
    a new connection to the same peer is refused."""
    peer = subprocess.Popen(['unshare', '--net', 'sleep', 'infinity'])
    server = None
    try:
        peer_prefix = ['nsenter', '--net=/proc/%d/ns/net' % peer.pid]
        time.sleep(0.2)
        for argv in (['ip', 'link', 'add', 'tw0', 'type', 'veth', 'peer', 'name', 'tw1'],
                     ['ip', 'link', 'set', 'tw1', 'netns', '/proc/%d/ns/net' % peer.pid],
                     ['ip', 'addr', 'add', '198.51.100.249/30', 'dev', 'tw0'], ['ip', 'link', 'set', 'tw0', 'up'],
                     ['ip', 'link', 'set', 'lo', 'up']):  # the reset our reject sends to the local socket goes via lo
            assert sandbox.run(argv)[0] == 0, argv
        for argv in (['ip', 'addr', 'add', PEER + '/30', 'dev', 'tw1'], ['ip', 'link', 'set', 'tw1', 'up']):
            subprocess.run(peer_prefix + argv, check=True)
        server = subprocess.Popen(peer_prefix + [sys.executable, '-c', SERVER])
        assert sandbox.ruleset() == ''  # nothing turned connection tracking on yet
        time.sleep(0.5)
        client = subprocess.Popen(sandbox.prefix + [sys.executable, '-c', CLIENT, PEER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline() == 'connected\n'
        sandbox.change({'rules': TUNNEL, 'default_deny': True, 'dns_servers': ['198.51.100.253']})
        outcome = client.communicate('go\n', timeout=30)[0]
        assert outcome.strip() == "{'old': 'two', 'new': 'ConnectionRefusedError'}"
    finally:
        for process in (server, peer):
            if process:
                process.kill()
                process.wait()


def table_files(sandbox):
    """The files of the table (ruleset, unit, drop-in), not those of the boot check."""
    return dict((k, v) for k, v in sandbox.files().items() if 'boot-revert' not in k and 'etc/tunnelwall/' not in k)


def test_a_reboot_before_the_confirmation_brings_back_the_confirmed_table_at_boot(sandbox):
    """Confirmed table, then a change killed mid-verification with its dead-man; "reboot": processes gone, ruleset
    flushed, then what boot runs: the boot check's ExecStart, then our unit's ExecStart (if its condition holds)."""
    confirmed = [dict(r, ipv4=['198.51.100.111'], ipv6=[]) for r in TUNNEL]
    sandbox.change({'rules': confirmed, 'default_deny': True, 'dns_servers': ['198.51.100.253']})
    live, files = sandbox.ruleset(), table_files(sandbox)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    boot_dir = os.path.join(sandbox.root, 'etc', 'tunnelwall')
    process = subprocess.Popen(sandbox.prefix + [sys.executable, '-c', KILLED_RUN, sandbox.config_dir, sandbox.systemd_dir,
                                                 sandbox.run_dir, boot_dir], stdout=subprocess.PIPE, text=True, env=env,
                               cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert process.stdout.readline() == 'verifying\n'
    record = json.loads(open(os.path.join(sandbox.config_dir, 'tunnelwall-pending.json'), encoding='utf-8').read())
    os.kill(process.pid, signal.SIGKILL)  # the reboot ends the module and its dead-man alike
    os.kill(record['armed']['pid'], signal.SIGKILL)
    process.wait()
    assert '198.51.100.11' in sandbox.ruleset()  # the unconfirmed table is live
    assert sandbox.run([NFT, 'flush', 'ruleset'])[0] == 0
    # The lab's "reboot" keeps the kernel's boot id: the boot check then waits for the record's deadline (a real
    # reboot has a new boot id, and the record is restored at once: test_egress_transaction.py).
    time.sleep(max(0, record['deadline'] - time.time()) + 0.1)
    boot_unit = open(os.path.join(sandbox.systemd_dir, 'tunnelwall-boot-revert.service'), encoding='utf-8').read()
    execstart = [line for line in boot_unit.splitlines() if line.startswith('ExecStart=')][0][len('ExecStart='):]
    assert execstart == '%s -I %s/revert.py --boot' % (sys.executable, boot_dir)
    done = subprocess.run(sandbox.prefix + execstart.split() + [sandbox.root], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and 'restored the state before run %s' % record['id'] in done.stderr, done.stderr
    unit = open(os.path.join(sandbox.systemd_dir, 'tunnelwall-nftables-tunnelwall.service'), encoding='utf-8').read()
    condition = [line for line in unit.splitlines() if line.startswith('ConditionPathExists=')][0].split('=', 1)[1]
    assert os.path.exists(condition)
    ours = [line for line in unit.splitlines() if line.startswith('ExecStart=')][0][len('ExecStart='):]
    assert sandbox.run(ours.split())[0] == 0
    assert sandbox.ruleset() == live and '198.51.100.11 ' not in live
    assert table_files(sandbox) == files
    assert not os.path.exists(os.path.join(sandbox.config_dir, 'tunnelwall-pending.json'))


FOREIGN_FILTER = 'table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n'


@pytest.mark.parametrize('state', ['present', 'absent'])
def test_a_table_of_our_name_that_is_not_ours_is_refused_and_untouched(sandbox, state):
    """Debian's own `inet filter` (input policy drop) and name=filter: refused before anything changes."""
    assert sandbox.run([NFT, '-f', '-'], data=FOREIGN_FILTER)[0] == 0
    before = sandbox.state()
    with pytest.raises(egress_transaction.EgressError, match=r'^table inet filter exists and was not created by this '
                       r'module \(no comment "tunnelwall.cloudflared.nftables_egress filter"'):
        sandbox.change({'name': 'filter', 'rules': TUNNEL, 'default_deny': True, 'state': state,
                        'dns_servers': ['198.51.100.253']})
    assert sandbox.state() == before


def test_our_table_carries_the_marker_and_one_an_earlier_version_loaded_is_still_ours(sandbox):
    params = {'rules': TUNNEL}
    sandbox.change(params)
    assert '\tcomment "tunnelwall.cloudflared.nftables_egress tunnelwall"\n' in sandbox.ruleset()
    # An earlier version: the same table without the comment, loaded from its ruleset file.
    listing = sandbox.run([NFT, 'list', 'table', 'inet', 'tunnelwall'])[1]
    unmarked = listing.replace('\tcomment "tunnelwall.cloudflared.nftables_egress tunnelwall"\n', '')
    assert sandbox.run([NFT, '-f', '-'], data='delete table inet tunnelwall\n' + unmarked)[0] == 0
    assert 'comment' not in sandbox.ruleset()
    assert sandbox.change(params)['changed'] is False  # nft's JSON has no table comment: same table
    assert sandbox.change({'state': 'absent'})['changed'] is True
