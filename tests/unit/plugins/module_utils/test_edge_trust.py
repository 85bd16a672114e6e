# -*- coding: utf-8 -*-
"""The three Cloudflare roots cloudflared adds to the system store on 7844 (tlsconfig/cloudflare_ca.go)."""

from __future__ import annotations

import hashlib
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import edge_trust

# SHA-256 fingerprints of the DER certificates in cloudflared 2026.8.2's tlsconfig/cloudflare_ca.go, computed
# with `openssl x509 -noout -fingerprint -sha256` from that file.
EXPECTED = {
    'aa63697a22764b67b2134ce14cb5690ea336940b93986113f49545917832d80d': 'CloudFlare Origin SSL ECC Certificate Authority',
    'd3c7e85c91707fc0a12abc5d88266747aa4fa8e7b162f633ffb3c9d989947620': 'CloudFlare Origin SSL Certificate Authority',
    '9a1ac2b4be15f9f27eee20a734cba4e9898f61001b3bd7c84b69b56a3e25a2b9': 'Origin Pull',
}


@pytest.mark.parametrize('name, fingerprint, pem', edge_trust.CLOUDFLARE_ROOTS)
def test_each_root_has_the_fingerprint_it_claims(name, fingerprint, pem):
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert hashlib.sha256(der).hexdigest() == fingerprint
    cert = x509.load_der_x509_certificate(der)
    unit = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    assert EXPECTED[fingerprint] == unit and unit in name
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == cert.subject  # self-signed roots


def test_there_are_exactly_the_three_of_cloudflared():
    assert {fingerprint for _name, fingerprint, _pem in edge_trust.CLOUDFLARE_ROOTS} == set(EXPECTED)
    bundle = edge_trust.cloudflare_roots_pem()
    assert bundle.count('-----BEGIN CERTIFICATE-----') == 3


def test_contexts_without_validation_check_nothing():
    contexts = edge_trust.contexts(False, None)
    assert {c.verify_mode for c in contexts.values()} == {ssl.CERT_NONE}
    assert not any(c.check_hostname for c in contexts.values())
