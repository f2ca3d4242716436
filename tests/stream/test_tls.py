"""Faust's TLS and SASL credentials from the librdkafka settings, with certificates made here."""

import ssl

import faust
import pytest
from certs import CA_NAME, make_certificates

from omnistream.stream.app import _credentials


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_mutual_tls_loads_the_ca_and_the_client_certificate(certificates):
    security = {"security.protocol": "SSL", "ssl.ca.location": str(certificates.ca),
                "ssl.certificate.location": str(certificates.client),
                "ssl.key.location": str(certificates.client_key)}
    credentials = _credentials(security)
    assert isinstance(credentials, faust.SSLCredentials)
    assert [c["subject"] for c in credentials.context.get_ca_certs()] == [((("commonName", CA_NAME),),)]
    with pytest.raises(ssl.SSLError):  # a key that does not belong to the certificate is an error at start
        _credentials({**security, "ssl.key.location": str(certificates.server_key)})


def test_sasl_over_tls_and_plaintext(certificates):
    sasl = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u",
            "sasl.password": "p", "ssl.ca.location": str(certificates.ca)}
    credentials = _credentials(sasl)
    assert isinstance(credentials, faust.SASLCredentials) and credentials.ssl_context is not None
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    plural = {k: v for k, v in sasl.items() if k != "sasl.mechanism"} | {"sasl.mechanisms": "SCRAM-SHA-256"}
    assert _credentials(plural).mechanism.value == "SCRAM-SHA-256"  # librdkafka's own spelling
    assert _credentials({**sasl, "security.protocol": "SASL_PLAINTEXT"}).ssl_context is None
    assert _credentials({}) is None
