"""Faust's TLS and SASL credentials from the librdkafka settings, with certificates made here."""

import ssl

import faust
import pytest
from certs import CA_NAME, make_certificates

from omnistream.stream.faust_worker import credentials


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_mutual_tls_loads_the_ca_and_the_client_certificate(certificates):
    security = {"security.protocol": "SSL", "ssl.ca.location": str(certificates.ca),
                "ssl.certificate.location": str(certificates.client),
                "ssl.key.location": str(certificates.client_key)}
    made = credentials(security)
    assert isinstance(made, faust.SSLCredentials)
    assert [c["subject"] for c in made.context.get_ca_certs()] == [((("commonName", CA_NAME),),)]
    with pytest.raises(ssl.SSLError):  # a key that does not belong to the certificate is an error at start
        credentials({**security, "ssl.key.location": str(certificates.server_key)})


def test_sasl_over_tls_and_plaintext(certificates):
    sasl = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u",
            "sasl.password": "p", "ssl.ca.location": str(certificates.ca)}
    made = credentials(sasl)
    assert isinstance(made, faust.SASLCredentials) and made.ssl_context is not None
    assert made.mechanism.value == "SCRAM-SHA-512"
    plural = {k: v for k, v in sasl.items() if k != "sasl.mechanism"} | {"sasl.mechanisms": "SCRAM-SHA-256"}
    assert credentials(plural).mechanism.value == "SCRAM-SHA-256"  # librdkafka's own spelling
    assert credentials({**sasl, "security.protocol": "SASL_PLAINTEXT"}).ssl_context is None
    assert credentials({}) is None
