# -*- coding: utf-8 -*-
"""Nothing of the lab reaches the machine's network, and host firewalls change only the hosts."""

from __future__ import annotations

import ipaddress
import json
import os
import socket

import pytest

from tests.lab import config
from tests.lab.system import PacketWatch, root_snapshot, run, snapshot_diff
from tests.support import edge_zone

# The lab's own behaviour, whatever ansible-core drives it: `make test` runs this once, in the latest venv
# (marker `once`, see the Makefile).
pytestmark = pytest.mark.once

# Outside every lab range: public resolvers, cloudflared's DNS-over-TLS fallback, the real edge, the uplink.
OUTSIDE = [('1.1.1.1', 853), ('8.8.8.8', 53), ('198.41.192.7', 7844), ('2606:4700:4700::1111', 853),
           ('2606:4700:a0::1', 7844), ('2001:4860:4860::8888', 53)]
FAST = 0.5


def test_the_edge_has_no_route_out_of_the_lab(lab):
    lab_nets = [ipaddress.ip_network(n) for n in ('198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32', 'fe80::/10',
                                                  'ff00::/8', '127.0.0.0/8', '::1/128')]
    for family in ('-4', '-6'):
        routes = json.loads(run(['ip', '-j', '-n', config.EDGE_NS, family, 'route', 'show', 'table', 'all']).stdout)
        for route in routes:
            if route['dst'] == 'default':
                assert route.get('type') == 'prohibit', route
                continue
            network = ipaddress.ip_network(route['dst'], strict=False)
            assert any(network.version == n.version and network.subnet_of(n) for n in lab_nets), route


def test_hosts_route_everything_through_the_edge(lab):
    for name in lab.hosts:
        for family, gateway in (('-4', '203.0.113.129'), ('-6', '2001:db8:ffff:1::1')):
            routes = json.loads(lab.exec(name, ['ip', '-j', family, 'route', 'show', 'default'], check=True).stdout)
            assert [(r['dst'], r['gateway'], r['dev']) for r in routes] == [('default', gateway, 'eth0')]


def test_nothing_leaves_the_lab_and_the_root_namespace_sees_nothing(lab):
    before = lab.counters()['outside']
    hosts = sorted(lab.hosts)
    with PacketWatch() as watch:
        # Positive control: the watcher does see what crosses the root namespace (the controller's SSH to a host).
        control = lab.hosts[hosts[0]]['ipv4']
        with socket.create_connection((control, 22), timeout=2) as conn:
            assert conn.recv(4).startswith(b'SSH')
        for name in hosts:
            for address, port in OUTSIDE:
                for extra in ([], ['--udp']):
                    result = lab.probe(name, 'connect', address, port, *extra)
                    assert not result['ok'] and result['error'] in ('refused', 'unreachable', 'prohibited'), (name, address, result)
                    assert result['elapsed'] < FAST, (name, address, result)
    seen = watch.destinations()
    assert config.CTL_LINK in seen.get(control, set()), 'the packet watch saw nothing: the check would prove nothing'
    leaked = {address: seen[address] for address, _port in OUTSIDE if address in seen}
    assert leaked == {}
    assert lab.counters()['outside'] >= before + len(hosts) * len(OUTSIDE) * 2, 'the edge did not see (and stop) the attempts'


def test_a_spoofed_answer_leads_nowhere(lab):
    lab.fault('dns', 'spoof')
    host = sorted(lab.hosts)[0]
    addresses = lab.probe(host, 'resolve', 'region1.v2.argotunnel.com')['addresses']
    assert addresses == sorted(edge_zone.SPOOFED.values())
    with PacketWatch() as watch:
        for address in addresses:
            result = lab.probe(host, 'tls', address, 7844, 'h2.cftunnel.com')
            assert not result['ok'] and result['elapsed'] < FAST, result
    assert not set(addresses) & set(watch.destinations())


def test_hosts_cannot_open_connections_to_the_controller(lab):
    """The edge forwards only controller -> hosts: a host cannot reach the root namespace's services."""
    result = lab.probe(sorted(lab.hosts)[0], 'connect', lab.state['controller'][0], 22)
    assert not result['ok'] and result['error'] == 'unreachable' and result['elapsed'] < FAST


def test_host_firewall_changes_stay_in_the_host_and_reset_restores_them(lab_pristine):
    lab = lab_pristine
    before = root_snapshot()
    changed = []
    for name in lab.hosts_with('ufw'):
        lab.exec(name, ['ufw', 'default', 'deny', 'outgoing'], check=True)
        changed.append(name)
    for name in lab.hosts_with('firewalld'):
        for command in (['--permanent', '--new-policy', 'twtest'], ['--permanent', '--policy', 'twtest', '--add-ingress-zone', 'HOST'],
                        ['--permanent', '--policy', 'twtest', '--add-egress-zone', 'ANY'],
                        ['--permanent', '--policy', 'twtest', '--set-target', 'REJECT'], ['--reload']):
            lab.exec(name, ['firewall-cmd'] + command, check=True)
        changed.append(name)
    assert changed
    for name in changed:
        result = lab.probe(name, 'tls', '198.51.100.11', 7844, 'h2.cftunnel.com', timeout=1.5)
        assert not result['ok'], (name, result)
    # The machine saw none of it: same netfilter, same /etc/default/ufw, /etc/ufw, /etc/firewalld.
    assert snapshot_diff(before, root_snapshot()) == []
    lab.reset_firewalls()
    for name in changed:
        assert lab.probe(name, 'tls', '198.51.100.11', 7844, 'h2.cftunnel.com')['ok'], name
    for name in lab.hosts_with('firewalld'):
        assert 'twtest' not in lab.exec(name, ['firewall-cmd', '--get-policies']).stdout
    for name in lab.hosts_with('ufw'):
        assert 'allow (outgoing)' in lab.exec(name, ['ufw', 'status', 'verbose']).stdout
    assert snapshot_diff(before, root_snapshot()) == []


def _host_sees(lab, name, path):
    return lab.exec(name, ['test', '-e', path]).returncode == 0


def test_a_hosts_etc_is_its_own_and_reset_restores_it(lab_pristine):
    """A module writing /etc/nftables.d or /etc/systemd/system in a host writes the host's /etc overlay, never the machine's."""
    lab = lab_pristine
    before = root_snapshot()
    written = ('/etc/nftables.d/twtest-egress.nft', '/etc/systemd/system/twtest.service',
               '/etc/systemd/system/sysinit.target.d/twtest.conf')
    # Something the machine has: removing it in a host must neither remove it on the machine nor survive a reset.
    shared = '/etc/nftables.conf'
    assert os.path.exists(shared)
    # Whatever the machine holds (another tool may have made /etc/nftables.d), the host's writes must not change it.
    machine_has_dir = os.path.exists('/etc/nftables.d')
    assert not any(os.path.exists(path) for path in written), 'the machine already has a file this test writes'
    for name in lab.hosts:
        script = 'set -e; mkdir -p /etc/nftables.d /etc/systemd/system/sysinit.target.d; rm %s; ' % shared
        script += '; '.join('echo %s > %s' % (name, path) for path in written)
        lab.exec(name, ['sh', '-c', script], check=True)
        for path in written:
            assert lab.exec(name, ['cat', path], check=True).stdout.strip() == name
        assert not _host_sees(lab, name, shared)
        # The writes landed in this host's own layer, not in another host's and not in the machine's /etc.
        upper = lab._etc_layer(lab.hosts[name]['dir'], lab.hosts[name]['etc_generation'])[0]  # pylint: disable=protected-access
        with open(upper + written[0][len('/etc'):], encoding='utf-8') as handle:
            assert handle.read().strip() == name
    assert os.path.exists('/etc/nftables.d') == machine_has_dir and os.path.exists(shared)
    assert not any(os.path.exists(path) for path in written)
    assert snapshot_diff(before, root_snapshot()) == []
    mounts = {line.split()[4]: line.split(' - ')[1].split()[0]
              for line in lab.exec(sorted(lab.hosts)[0], ['cat', '/proc/self/mountinfo'], check=True).stdout.splitlines()}
    assert mounts['/etc'] == 'overlay'
    with open('/proc/self/mountinfo', encoding='utf-8') as handle:
        assert 'twlab-etc' not in handle.read(), 'a host\'s /etc overlay is visible in the machine\'s mount namespace'
    lab.reset_firewalls()
    for name in lab.hosts:
        for path in written:
            assert not _host_sees(lab, name, path), (name, path)
        # After a reset the host's /etc is the machine's again: the directory is there exactly when the machine has it.
        assert _host_sees(lab, name, '/etc/nftables.d') == machine_has_dir, name
        assert _host_sees(lab, name, shared), name
        # The private firewall files are still mounted over the new overlay.
        assert lab.exec(name, ['grep', '-c', '198.51.100.253', '/etc/resolv.conf']).stdout.strip() == '1'
        assert lab.probe(name, 'tls', '198.51.100.11', 7844, 'h2.cftunnel.com')['ok'], name
        layers = os.listdir(os.path.join(lab.hosts[name]['dir'], 'etc-layer'))
        assert layers == [str(lab.hosts[name]['etc_generation'])], 'an old /etc layer was left behind: %s' % layers
    assert snapshot_diff(before, root_snapshot()) == []
