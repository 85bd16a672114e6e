# -*- coding: utf-8 -*-
"""Every fault visibly changes what a client sees, and reset() undoes it."""

from __future__ import annotations

import subprocess
import time

import dns.exception
import dns.rcode
import pytest

from tests.lab import config, faults
from tests.support import edge_zone

# The lab's own behaviour, whatever ansible-core drives it: `make test` runs this once, in the latest venv
# (marker `once`, see the Makefile).
pytestmark = pytest.mark.once


RECORDS = edge_zone.edge_records('lab')


def query(lab, name, rdtype):
    return lab.query(name, rdtype)


def answers(response):
    return sorted(item.to_text() for rrset in response.answer for item in rrset)


DROP_TIMEOUT = 1.5  # a probe that meets a silent drop gives up after this long


def _tls(lab, host, address, port=7844, name='h2.cftunnel.com'):
    return lab.probe(host, 'tls', address, port, name, timeout=DROP_TIMEOUT)


def _quic(lab, host, address):
    return lab.probe(host, 'quic', address, 7844, 'quic.cftunnel.com', timeout=DROP_TIMEOUT)


def _dropped(result):
    return not result['ok'] and result['error'] == 'timeout' and result['elapsed'] >= DROP_TIMEOUT * 0.9


def _refused(result, error='refused'):
    return not result['ok'] and result['error'] == error and result['elapsed'] < 0.5


@pytest.fixture
def host(lab):
    """A host without a firewall of its own if there is one, so only the edge decides."""
    return (lab.hosts_with('none') or sorted(lab.hosts))[0]


@pytest.mark.parametrize('address', ['198.51.100.11', '2001:db8:e::21'])
def test_udp7844_drop_and_reject(lab, host, address):
    assert _quic(lab, host, address)['ok']
    lab.fault('udp7844', 'drop')
    assert _dropped(_quic(lab, host, address))
    assert _tls(lab, host, address)['ok'], 'TCP 7844 must still work'
    lab.fault('udp7844', 'reject')
    assert _refused(_quic(lab, host, address))
    lab.reset()
    assert _quic(lab, host, address)['ok']


@pytest.mark.parametrize('address', ['198.51.100.13', '2001:db8:e::23'])
def test_udp7844_blocked_for_one_host_only(lab, address):
    blocked, other = sorted(lab.hosts)[:2]
    lab.fault('udp7844', 'drop', blocked)
    assert _dropped(_quic(lab, blocked, address))
    assert _quic(lab, other, address)['ok'], 'the other hosts keep QUIC'
    assert _tls(lab, blocked, address)['ok'], 'TCP 7844 must still work'
    lab.fault('udp7844', 'reject')  # every host now; replaces nothing of the per-host fault
    assert len(lab.state['faults']) == 2 and _refused(_quic(lab, other, address))
    with pytest.raises(ValueError, match="no host 'nosuch' in the lab"):
        lab.fault('udp7844', 'drop', 'nosuch')
    lab.reset()
    assert _quic(lab, blocked, address)['ok']


@pytest.mark.parametrize('address', ['198.51.100.12', '2001:db8:e::22'])
def test_tcp7844_drop_and_reject(lab, host, address):
    lab.fault('tcp7844', 'drop')
    assert _dropped(_tls(lab, host, address))
    assert _quic(lab, host, address)['ok'], 'QUIC must still work'
    assert _tls(lab, host, address, 443, 'api.cloudflare.com')['ok'], 'TCP 443 must still work'
    lab.fault('tcp7844', 'reject')
    assert _refused(_tls(lab, host, address))
    lab.reset()
    assert _tls(lab, host, address)['ok']


def test_region_down(lab, host):
    lab.fault('region', 'region1')
    for address in RECORDS['region1.v2.argotunnel.com']['A'] + RECORDS['region1.v2.argotunnel.com']['AAAA'][:1]:
        assert _dropped(_tls(lab, host, address))
    assert _dropped(_quic(lab, host, '198.51.100.13'))
    for address in ('198.51.100.21', '2001:db8:e::22'):
        assert _tls(lab, host, address)['ok'] and _quic(lab, host, address)['ok']
    lab.fault('region', 'region1', 'reject')
    assert _refused(_tls(lab, host, '198.51.100.11'))
    assert _refused(_tls(lab, host, '2001:db8:e::12'))
    assert _refused(_quic(lab, host, '198.51.100.13'), 'unreachable')   # ICMP administratively prohibited
    assert _refused(_quic(lab, host, '2001:db8:e::11'), 'prohibited')    # ICMPv6 administratively prohibited
    # Rotation targets of the region are down too.
    assert _refused(_tls(lab, host, '198.51.100.111'))
    assert lab.probe(host, 'resolve', 'region1.v2.argotunnel.com')['ok'], 'DNS is not part of a region'


@pytest.mark.parametrize('service, down, up', [('api', 'api.cloudflare.com', 'update.argotunnel.com'),
                                               ('update', 'update.argotunnel.com', 'api.cloudflare.com')])
def test_api_and_update_down(lab, host, service, down, up):
    address, other = RECORDS[down]['A'][0], RECORDS[up]['A'][0]
    lab.fault(service)
    assert _dropped(_tls(lab, host, address, 443, down))
    assert _tls(lab, host, other, 443, up)['ok']
    lab.fault(service, 'reject')
    assert _refused(_tls(lab, host, RECORDS[down]['AAAA'][0], 443, down))
    assert _tls(lab, host, '198.51.100.11')['ok'], 'the tunnel is not affected'


def test_dns_servfail_nxdomain_refused(lab, host):
    name = 'region2.v2.argotunnel.com'
    for kind, rcode, error in (('servfail', dns.rcode.SERVFAIL, 'temporary'), ('nxdomain', dns.rcode.NXDOMAIN, 'nxdomain'),
                               ('refused', dns.rcode.REFUSED, 'temporary')):
        lab.fault('dns', kind)
        assert query(lab, name, 'A').rcode() == rcode
        result = lab.probe(host, 'resolve', name)
        assert not result['ok'] and result['error'] == error, (kind, result)


def test_dns_fault_on_one_name_or_type(lab):
    lab.fault('dns', 'servfail', 'Region1.v2.argotunnel.com/aaaa')
    assert query(lab, 'region1.v2.argotunnel.com', 'AAAA').rcode() == dns.rcode.SERVFAIL
    assert answers(query(lab, 'region1.v2.argotunnel.com', 'A')) == sorted(RECORDS['region1.v2.argotunnel.com']['A'])
    assert query(lab, 'region2.v2.argotunnel.com', 'AAAA').rcode() == dns.rcode.NOERROR


def test_dns_timeout(lab, host):
    lab.fault('dns', 'timeout')
    with pytest.raises(dns.exception.Timeout):
        query(lab, 'region1.v2.argotunnel.com', 'A')
    result = lab.probe(host, 'resolve', 'region1.v2.argotunnel.com', timeout=10)
    assert not result['ok'] and result['error'] == 'temporary' and result['elapsed'] >= 0.9


def test_dns_spoof_answers_outside_the_lab_ranges(lab, host):
    lab.fault('dns', 'spoof')
    assert answers(query(lab, 'region1.v2.argotunnel.com', 'A')) == [edge_zone.SPOOFED['A']]
    result = lab.probe(host, 'resolve', 'region1.v2.argotunnel.com')
    assert result['addresses'] == sorted(edge_zone.SPOOFED.values())
    # And the spoofed address leads nowhere: refused at once by the edge.
    assert _refused(lab.probe(host, 'connect', edge_zone.SPOOFED['A'], 7844))


def test_dns_rotation_moves_names_to_addresses_the_edge_serves(lab, host):
    lab.fault('dns', 'rotate')
    rotated = config.rotated_records(RECORDS)['region1.v2.argotunnel.com']
    assert rotated['A'] == ['198.51.100.111', '198.51.100.112', '198.51.100.113']
    assert answers(query(lab, 'region1.v2.argotunnel.com', 'A')) == rotated['A']
    assert lab.probe(host, 'resolve', 'region1.v2.argotunnel.com')['addresses'] == sorted(rotated['A'] + rotated['AAAA'])
    for address in (rotated['A'][0], rotated['AAAA'][-1]):
        assert _tls(lab, host, address)['ok'] and _quic(lab, host, address)['ok']
    assert answers(query(lab, '_v2-origintunneld._tcp.argotunnel.com', 'SRV')) == ['1 1 7844 region1.v2.argotunnel.com.',
                                                                                   '1 1 7844 region2.v2.argotunnel.com.']


def test_dns_delay(lab):
    lab.fault('dns', 'delay', '400')
    # tests/support/dns_server.py sleeps before it re-reads its state: the first answer after a change of
    # delay_ms still has the old delay. One query to let it see the new state.
    query(lab, 'api.cloudflare.com', 'A')
    started = time.monotonic()
    query(lab, 'api.cloudflare.com', 'A')
    assert time.monotonic() - started >= 0.4


def test_faults_add_up_and_reset_clears_them_all(lab, host):
    lab.fault('udp7844', 'drop')
    lab.fault('tcp7844', 'reject')
    lab.fault('dns', 'nxdomain')
    lab.fault('dns', 'rotate')
    assert [f[0] for f in lab.state['faults']] == ['udp7844', 'tcp7844', 'dns', 'dns']
    lab.fault('tcp7844', 'drop')  # replaces the reject
    assert ['tcp7844', 'drop'] in lab.state['faults'] and ['tcp7844', 'reject'] not in lab.state['faults']
    lab.reset()
    assert lab.state['faults'] == []
    assert _quic(lab, host, '198.51.100.11')['ok'] and _tls(lab, host, '198.51.100.11')['ok']
    assert answers(query(lab, 'region1.v2.argotunnel.com', 'A')) == RECORDS['region1.v2.argotunnel.com']['A']


def test_quic_size_and_split_are_nft_rules_the_edge_loads(lab):
    assert lab.fault('quic-size', '1231') == ['quic-size', '1231']
    assert lab.fault('quic-size', '1300') == ['quic-size', '1300']  # replaces the first
    assert lab.fault('quic-split') == ['quic-split']
    assert lab.state['faults'] == [['quic-size', '1300'], ['quic-split']]
    table = subprocess.run(['ip', 'netns', 'exec', config.EDGE_NS, 'nft', 'list', 'table', 'inet', config.NFT_FAULT_TABLE],
                           capture_output=True, text=True, check=True).stdout
    assert 'udp length > 1308' in table  # the UDP header's 8 bytes on top of the payload
    assert 'set quic_seen4' in table and 'set quic_seen6' in table and '@quic_seen6' in table


def test_tls_size_and_quic_exact_are_nft_rules_the_edge_loads(lab):
    assert lab.fault('tls-size', '1000') == ['tls-size', '1000']
    assert lab.fault('quic-exact', '1280') == ['quic-exact', '1280']
    table = subprocess.run(['ip', 'netns', 'exec', config.EDGE_NS, 'nft', 'list', 'table', 'inet', config.NFT_FAULT_TABLE],
                           capture_output=True, text=True, check=True).stdout
    assert 'tcp dport 7844 meta length > 1000' in table
    assert 'udp length != 1288' in table


def test_bad_faults_are_refused(lab):
    for bad in (['udp7844'], ['udp7844', 'slow'], ['region', 'mars'], ['dns', 'lie'], ['api', 'drop', 'x'], ['nosuch'],
                ['quic-size'], ['quic-size', 'big'], ['quic-size', '0'], ['quic-split', 'now'],
                ['tls-size'], ['tls-size', '70000'], ['quic-exact', 'x']):
        with pytest.raises(faults.FaultError):
            lab.fault(*bad)
    assert lab.state['faults'] == []


def test_fault_and_reset_from_the_command_line(lab, host, lab_cli):
    result = lab_cli(lab.dir, 'fault', 'tcp7844', 'reject')
    assert result.returncode == 0, result.stderr
    lab.reload()  # another process changed the state
    assert lab.state['faults'] == [['tcp7844', 'reject']]
    assert _refused(_tls(lab, host, '198.51.100.11'))
    assert lab_cli(lab.dir, 'fault', 'bogus').returncode == 2
    assert lab_cli(lab.dir, 'reset').returncode == 0
    assert _tls(lab, host, '198.51.100.11')['ok']
