"""A throw-away CA with a broker certificate (for 127.0.0.1 and localhost) and a client
certificate, made with the openssl command at test time: nothing secret lives in the repository."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CA_NAME = "omnistream-test-ca"
CA_EXTENSIONS = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
SERVER_EXTENSIONS = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
CLIENT_EXTENSIONS = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"


@dataclass(frozen=True)
class Certificates:
    """PEM files in ``folder``, named as deploy/kafka/broker.sh expects (ca.pem, server.pem, server.key)."""

    folder: Path
    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path


def make_certificates(folder: Path) -> Certificates:
    """A CA valid for a day, and the broker's and a client's certificates signed by it."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    def signed(name: str, subject: str, extensions: str) -> None:
        (folder / f"{name}.ext").write_text(extensions)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={subject}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")

    (folder / "ca.ext").write_text(CA_EXTENSIONS)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.csr", "-subj", f"/CN={CA_NAME}")
    openssl("x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "1", "-extfile", "ca.ext", "-out", "ca.pem")
    signed("server", "localhost", SERVER_EXTENSIONS)
    signed("client", "omnistream-worker", CLIENT_EXTENSIONS)
    return Certificates(folder, *(folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem",
                                                             "client.key")))
