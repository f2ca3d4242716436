"""A real single-node Apache Kafka broker (KRaft) on spare ports, started through deploy/."""

import os
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BROKER = REPO / "deploy" / "kafka" / "broker.sh"
PORT, CONTROLLER_PORT = 19092, 19093


def broker_env() -> dict[str, str]:
    """The environment under which deploy/ (and `omnistream demo`) use the test broker."""
    return {**os.environ, "OMNISTREAM_KAFKA_PORT": str(PORT), "OMNISTREAM_KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT)}


def _broker(action: str) -> None:
    subprocess.run([str(BROKER), action], check=True, env=broker_env(), timeout=300)


@pytest.fixture(scope="session")
def kafka_bootstrap():
    _broker("reset")
    _broker("start")
    yield f"127.0.0.1:{PORT}"
    _broker("stop")


@pytest.fixture
def test_broker_env(kafka_bootstrap):
    return broker_env()


@pytest.fixture
def topic_prefix():
    return f"t{uuid.uuid4().hex[:8]}."
