# -*- coding: utf-8 -*-
"""Fixtures shared by tests/integration and the lab tests: one real DNS server (and one DNS-over-TLS server) per
session, the lookup against it, and a recorder of the warnings Ansible shows.

Use from a conftest.py with ``from tests.support.fixtures import *  # noqa``.
"""

from __future__ import annotations

import pytest
import trustme

from ansible.plugins.loader import lookup_loader
from ansible.utils.display import Display

from tests.support import edge_zone
from tests.support.dns_fixture import DnsServer

LAB_TRUST = list(edge_zone.LAB_RANGES)

__all__ = ['LAB_TRUST', 'lab_ca', 'dns_session', 'dot_session', 'dns', 'dot', 'edge_endpoints', 'warnings', 'lookup']


@pytest.fixture(scope='session')
def lab_ca(tmp_path_factory):
    """A CA and a certificate for cloudflare-dns.com, the DNS-over-TLS server's name."""
    directory = tmp_path_factory.mktemp('ca')
    ca = trustme.CA()
    cert = ca.issue_cert('cloudflare-dns.com')
    paths = {'ca': str(directory / 'ca.pem'), 'cert': str(directory / 'cert.pem'), 'key': str(directory / 'key.pem')}
    ca.cert_pem.write_to_path(paths['ca'])
    cert.cert_chain_pems[0].write_to_path(paths['cert'])
    cert.private_key_pem.write_to_path(paths['key'])
    return paths


@pytest.fixture(scope='session')
def dns_session(tmp_path_factory):
    """The session's DNS server on loopback (tests/support/dns_server.py in its own process)."""
    server = DnsServer(str(tmp_path_factory.mktemp('dns'))).start()
    yield server
    server.stop()


@pytest.fixture(scope='session')
def dot_session(tmp_path_factory, lab_ca):  # pylint: disable=redefined-outer-name
    """The session's DNS-over-TLS server on 127.0.0.1, with a certificate from ``lab_ca``."""
    server = DnsServer(str(tmp_path_factory.mktemp('dot')), listen=('127.0.0.1',),
                       tls_cert=lab_ca['cert'], tls_key=lab_ca['key']).start()
    yield server
    server.stop()


@pytest.fixture
def dns(dns_session):  # pylint: disable=redefined-outer-name
    """The session's DNS server, answering the lab zone with no fault and an empty log."""
    dns_session.reset()
    yield dns_session
    dns_session.reset()


@pytest.fixture
def dot(dot_session):  # pylint: disable=redefined-outer-name
    """The session's DNS-over-TLS server, with no fault and an empty log."""
    dot_session.reset()
    yield dot_session
    dot_session.reset()


@pytest.fixture(scope='session')
def edge_endpoints():
    """The lookup plugin tunnelwall.cloudflared.edge_endpoints, loaded from the collection under test."""
    plugin = lookup_loader.get('tunnelwall.cloudflared.edge_endpoints')
    assert plugin is not None, 'the collection is not installed where ANSIBLE_COLLECTIONS_PATH points'
    return plugin


@pytest.fixture
def warnings(monkeypatch):
    """Every warning the lookup gives, in order."""
    seen = []
    monkeypatch.setattr(Display, 'warning', lambda self, msg, *args, **kwargs: seen.append(msg))
    return seen


@pytest.fixture
def lookup(edge_endpoints, dns, tmp_path):  # pylint: disable=redefined-outer-name
    """Call the lookup against the test server, with a cache private to the test."""
    def call(**options):
        options.setdefault('nameservers', [dns.address])
        options.setdefault('port', dns.port)
        options.setdefault('trusted_ranges', LAB_TRUST)
        options.setdefault('cache_dir', str(tmp_path / 'cache'))
        result = edge_endpoints.run([], variables={}, **options)
        assert isinstance(result, list) and len(result) == 1
        return result[0]
    return call
