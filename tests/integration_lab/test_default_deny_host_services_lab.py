# -*- coding: utf-8 -*-
"""Under a default deny, the host's own plumbing proven with packets on the lab's firewalld and ufw hosts.

- DHCP: datagrams from the client port (68, 546) to the server port (67, 547) - ff02::1:2 and unicast to the
  gateway - reach a listener in the edge namespace with allow_dhcp (the default) and do not with allow_dhcp=false;
  from another source port they never do. A broadcast to 255.255.255.255 never reaches a socket there (the edge's
  policy stops every non-lab destination in prerouting), so it is seen by the edge's "outside" counter instead.
- MLD: joining a group makes the host's kernel send MLDv2 reports (ICMPv6 143); the host's own counters
  (/proc/net/snmp6: Icmp6OutType143 counts only what netfilter let out) say whether they left.
- The metadata service: 169.254.169.254 and fd00:ec2::254 are not lab addresses (tests/lab/config.ASSIGNABLE), so no
  server can answer there; the edge's "outside" counter counts what left the host for them (the edge refuses it, so
  nothing leaves the lab) - nothing by default, something with allow_metadata.

Only fw1 and ufw1 are touched, reset before and after each test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.lab import config
from tests.integration_lab.test_firewalld_egress_lab import ok, run_module

# What gets out of the host is up to its firewall, whatever ansible-core delivered the module: `make test` runs this
# once, in the latest venv (marker `once`, see the Makefile).
pytestmark = pytest.mark.once

HOSTS = {'firewalld': ('fw1', 'tunnelwall.cloudflared.firewalld_egress'),
         'ufw': ('ufw1', 'tunnelwall.cloudflared.ufw_egress')}
MARK = b'tunnelwall-issue13'

# Listens in the edge namespace on the DHCP server ports (all addresses, ff02::1:2 joined on the LAN bridge) and
# prints, as JSON, every datagram carrying MARK: [family, source port, payload].
LISTENER = r'''
import json, select, socket, struct, sys, time
v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
v4.bind(('', 67))
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
v6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
v6.bind(('::', 547))
v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
              socket.inet_pton(socket.AF_INET6, 'ff02::1:2') + struct.pack('@I', socket.if_nametoindex(sys.argv[1])))
print('ready', flush=True)
seen = []
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    for s in select.select([v4, v6], [], [], 0.2)[0]:
        data, peer = s.recvfrom(2048)
        if data.startswith(b'tunnelwall-issue13'):
            seen.append([s.family == socket.AF_INET6 and 'ipv6' or 'ipv4', peer[1], data.decode()])
print(json.dumps(seen), flush=True)
'''

# Runs in a lab host: sends MARK+label datagrams from the given source port; prints {label: error or null}.
SENDER = r'''
import json, socket, sys
results = {}
for label, family, source_port, address, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET6 if family == 'ipv6' else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('::' if family == 'ipv6' else '', source_port))
        target = (address, port, 0, socket.if_nametoindex('eth0')) if family == 'ipv6' else (address, port)
        s.sendto(b'tunnelwall-issue13 ' + label.encode(), target)
        results[label] = None
    except OSError as error:
        results[label] = '%s: %s' % (type(error).__name__, error)
    finally:
        s.close()
print(json.dumps(results))
'''

# Runs in a lab host: joins a link-local group on eth0 (the kernel sends unsolicited MLDv2 reports at once and again
# within a second) and prints the deltas of the host's ICMPv6 output counters.
MLD = r'''
import json, socket, struct, time
def counters():
    values = {}
    for line in open('/proc/net/snmp6'):
        key, value = line.split()
        values[key] = int(value)
    return values
before = counters()
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
             socket.inet_pton(socket.AF_INET6, 'ff02::7a77:13') + struct.pack('@I', socket.if_nametoindex('eth0')))
time.sleep(2.5)
after = counters()
s.close()
print(json.dumps(dict((k, after.get(k, 0) - before.get(k, 0)) for k in ('Icmp6OutType143', 'Ip6OutDiscards'))))
'''


def gateways(lab, host):
    routes = {}
    for family in ('-4', '-6'):
        out = lab.exec(host, ['ip', '-j', family, 'route', 'show', 'default'], check=True).stdout
        routes[family] = json.loads(out)[0]['gateway']
    return routes['-4'], routes['-6']


def dhcp_sends(lab, host, cases):
    """Send ``cases`` (label, family, source port, address, port) from ``host``; return (send errors, labels seen)."""
    listener = subprocess.Popen(['ip', 'netns', 'exec', config.EDGE_NS, sys.executable, '-c', LISTENER, config.BRIDGE,
                                 '4'], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == 'ready'
        sent = lab.exec(host, ['python3', '-c', SENDER, json.dumps(cases)], check=True).stdout
        seen = json.loads(listener.stdout.readline())
    finally:
        listener.wait(timeout=10)
    return json.loads(sent.strip().splitlines()[-1]), {item[2].split(' ', 1)[1]: item[1] for item in seen}


def dhcp_cases(lab, host):
    gw4, gw6 = gateways(lab, host)
    return [['renew4', 'ipv4', 68, gw4, 67],
            ['multicast6', 'ipv6', 546, 'ff02::1:2', 547], ['renew6', 'ipv6', 546, gw6, 547],
            # Not the client's port: no DHCP allowance lets this out.
            ['other4', 'ipv4', 40068, gw4, 67], ['other6', 'ipv6', 40546, gw6, 547]]


def broadcast_left(lab, host, source_port):
    """How many DHCPDISCOVER-like broadcasts (255.255.255.255:67 from ``source_port``) reached the edge."""
    before = lab.counters()['outside']
    case = [['broadcast4', 'ipv4', source_port, '255.255.255.255', 67]]
    sent = lab.exec(host, ['python3', '-c', SENDER, json.dumps(case)], check=True).stdout
    errors = json.loads(sent.strip().splitlines()[-1])
    return lab.counters()['outside'] - before, errors['broadcast4']


def mld(lab, host):
    return json.loads(lab.exec(host, ['python3', '-c', MLD], check=True).stdout.strip().splitlines()[-1])


def outside_delta(lab, host, address):
    """How many packets for ``address`` (TCP 80) left ``host`` and reached the edge (its "outside" counter)."""
    before = lab.counters()['outside']
    lab.probe(host, 'connect', address, 80, timeout=1.0)
    return lab.counters()['outside'] - before


@pytest.fixture
def hosts(lab):
    names = [h for h, dummy in HOSTS.values()]
    lab.reset_firewalls(names)
    yield lab
    lab.reset_firewalls(names)


def apply(lab, plan, backend, **args):  # pylint: disable=redefined-outer-name
    host, module = HOSTS[backend]
    return ok(run_module(lab, dict(args, rules=plan['rules'], default_deny=True, confirm_timeout=0), host=host,
                         module=module))


@pytest.mark.parametrize('backend', sorted(HOSTS))
def test_dhcp_renewals_get_out_under_default_deny_unless_turned_off(hosts, plan, backend):  # pylint: disable=redefined-outer-name
    host = HOSTS[backend][0]
    cases = dhcp_cases(hosts, host)
    # Without our firewall every datagram arrives: the listener and the sender work.
    errors, seen = dhcp_sends(hosts, host, cases)
    assert set(seen) == {c[0] for c in cases}, (errors, seen)
    assert broadcast_left(hosts, host, 68) == (1, None)

    result = apply(hosts, plan, backend)
    assert result['changed'] is True
    errors, seen = dhcp_sends(hosts, host, cases)
    assert set(seen) == {'renew4', 'multicast6', 'renew6'}, (errors, seen)
    assert seen['renew4'] == 68 and seen['renew6'] == 546
    assert errors['other4'] and errors['other6'], errors  # refused at once (reject), not silently dropped
    assert broadcast_left(hosts, host, 68) == (1, None)
    assert broadcast_left(hosts, host, 40068)[0] == 0

    apply(hosts, plan, backend, allow_dhcp=False)
    errors, seen = dhcp_sends(hosts, host, cases)
    assert seen == {}, (errors, seen)
    assert all(errors.values()), errors
    left, error = broadcast_left(hosts, host, 68)
    assert left == 0 and error, error


@pytest.mark.parametrize('backend', sorted(HOSTS))
def test_metadata_is_refused_by_default_and_allowed_with_the_option(hosts, plan, backend):  # pylint: disable=redefined-outer-name
    host = HOSTS[backend][0]
    # Without our firewall a connect reaches the edge, which counts and refuses it (nothing leaves the lab).
    assert outside_delta(hosts, host, '169.254.169.254') >= 1
    apply(hosts, plan, backend)
    assert outside_delta(hosts, host, '169.254.169.254') == 0
    assert outside_delta(hosts, host, 'fd00:ec2::254') == 0
    apply(hosts, plan, backend, allow_metadata=True)
    assert outside_delta(hosts, host, '169.254.169.254') >= 1
    assert outside_delta(hosts, host, 'fd00:ec2::254') >= 1
    # Only TCP 80: another port to the same address stays refused.
    before = hosts.counters()['outside']
    hosts.probe(host, 'connect', '169.254.169.254', 443, timeout=1.0)
    assert hosts.counters()['outside'] == before


def test_mld_reports_get_out_of_firewalld_only_with_allow_mld(hosts, plan):  # pylint: disable=redefined-outer-name
    assert mld(hosts, 'fw1')['Icmp6OutType143'] >= 1
    apply(hosts, plan, 'firewalld')
    assert mld(hosts, 'fw1')['Icmp6OutType143'] >= 1
    apply(hosts, plan, 'firewalld', allow_mld=False)
    counted = mld(hosts, 'fw1')
    assert counted['Icmp6OutType143'] == 0 and counted['Ip6OutDiscards'] >= 1, counted


def test_ufw_lets_mld_out_by_its_own_rules_whatever_allow_mld_says(hosts, plan):  # pylint: disable=redefined-outer-name
    apply(hosts, plan, 'ufw', allow_mld=False)
    assert mld(hosts, 'ufw1')['Icmp6OutType143'] >= 1


def test_nothing_else_changes(hosts, plan):  # pylint: disable=redefined-outer-name
    # The host services add only their own rules: the ruleset with them off equals the ruleset before the host-service
    # options, and turning them on and off again leaves it byte for byte the same.
    apply(hosts, plan, 'firewalld', allow_dhcp=False, allow_mld=False)
    without = hosts.nft_ruleset('fw1')
    apply(hosts, plan, 'firewalld', allow_metadata=True)
    with_all = hosts.nft_ruleset('fw1')
    assert with_all != without
    # firewalld prints the new rich rules back exactly as the module renders them: a second run changes nothing.
    again = apply(hosts, plan, 'firewalld', allow_metadata=True)
    assert again['changed'] is False and again['commands'] == [], again
    assert hosts.nft_ruleset('fw1') == with_all
    apply(hosts, plan, 'firewalld', allow_dhcp=False, allow_mld=False)
    assert hosts.nft_ruleset('fw1') == without
    added = [line.strip() for line in with_all.splitlines() if line not in without.splitlines()]
    assert added and all('udp sport' in line or 'ff00::/8' in line or '169.254.169.254' in line or 'fd00:ec2::254' in line
                         for line in added), added


def test_ufw_lists_the_host_service_rules_and_a_second_run_changes_nothing(hosts, plan):  # pylint: disable=redefined-outer-name
    first = apply(hosts, plan, 'ufw', allow_metadata=True)
    assert {(r['purpose'], r['family'], r['port'], r['destination']) for r in first['added']
            if r['purpose'] in ('dhcp', 'metadata')} == {
        ('dhcp', 'ipv4', 67, '0.0.0.0/0'), ('dhcp', 'ipv6', 547, '::/0'), ('metadata', 'ipv4', 80, '169.254.169.254'),
        ('metadata', 'ipv6', 80, 'fd00:ec2::254')}
    # ufw itself reads the blocks back (its own status listing), with the client port and the comment.
    status = hosts.exec('ufw1', ['ufw', 'status'], check=True).stdout
    assert re.search(r'\n67/udp\s+ALLOW OUT\s+68/udp\s+# tunnelwall:dhcp\n', status), status
    assert re.search(r'\n547/udp \(v6\)\s+ALLOW OUT\s+546/udp \(v6\)\s+# tunnelwall:dhcp\n', status), status
    assert re.search(r'169\.254\.169\.254 80/tcp\s+ALLOW OUT\s+Anywhere\s+# tunnelwall:metadata', status), status
    assert apply(hosts, plan, 'ufw', allow_metadata=True)['changed'] is False
