"""A real single-node Apache Kafka broker (KRaft) on spare ports, started through deploy/."""

import subprocess
import uuid

import pytest
from streams import BROKER, PORT, broker_env


def _broker(action: str) -> None:
    subprocess.run([str(BROKER), action], check=True, env=broker_env(), timeout=300)


@pytest.fixture(scope="session")
def kafka_bootstrap():
    _broker("reset")
    _broker("start")
    yield f"127.0.0.1:{PORT}"
    _broker("stop")


@pytest.fixture(autouse=True)
def _broker_up_after_each_test(request):
    """A test that stops the shared broker (the outage tests) and fails before starting it
    again must fail alone: the broker is started again after it (a no-op when it runs)."""
    yield
    if "kafka_bootstrap" in request.fixturenames:
        _broker("start")


@pytest.fixture
def test_broker_env(kafka_bootstrap):
    return broker_env()


@pytest.fixture
def topic_prefix():
    return f"t{uuid.uuid4().hex[:8]}."
