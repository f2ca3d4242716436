"""Faust's TLS and SASL credentials from the librdkafka settings, with certificates made here."""

import subprocess

import faust
import pytest

from omnistream.stream.app import _credentials


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
            "-subj", "/CN=worker")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "client.pem", "-days", "1")
    return d


def test_mutual_tls_loads_the_ca_and_the_client_certificate(certificates):
    security = {"security.protocol": "SSL", "ssl.ca.location": str(certificates / "ca.pem"),
                "ssl.certificate.location": str(certificates / "client.pem"),
                "ssl.key.location": str(certificates / "client.key")}
    credentials = _credentials(security)
    assert isinstance(credentials, faust.SSLCredentials)
    assert [c["subject"] for c in credentials.context.get_ca_certs()] == [((("commonName", "test-ca"),),)]
    with pytest.raises(Exception):  # a key that does not belong to the certificate is an error at start
        _credentials({**security, "ssl.key.location": str(certificates / "ca.key")})


def test_sasl_over_tls_and_plaintext(certificates):
    sasl = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u",
            "sasl.password": "p", "ssl.ca.location": str(certificates / "ca.pem")}
    credentials = _credentials(sasl)
    assert isinstance(credentials, faust.SASLCredentials) and credentials.ssl_context is not None
    assert _credentials({**sasl, "security.protocol": "SASL_PLAINTEXT"}).ssl_context is None
    assert _credentials({}) is None
