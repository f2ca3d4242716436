"""The worker and the confluent clients against a broker that wants credentials, started by
deploy/ with certificates made at test time: mutual TLS (client certificates) on one listener,
SASL_SSL with SCRAM-SHA-256 on another. A wrong password reads as refused credentials, not as
an unreachable broker."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from certs import Certificates, make_certificates
from confluent_kafka import KafkaException
from streams import consume, start_worker

from omnistream.cli.replay import replay
from omnistream.stream.config import Settings
from omnistream.stream.points import Point
from omnistream.stream.processor import Processor
from omnistream.stream.scorer import ModelStore
from omnistream.stream.topics import client_config, ensure_topics, metric_topics, refused

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
BROKER = REPO / "deploy" / "kafka" / "broker.sh"
MODELS = REPO / "deploy" / "demo" / "models"
PORT, CONTROLLER_PORT, SSL_PORT, SASL_PORT = 19192, 19193, 19194, 19195
USER, PASSWORD = "omnistream", "scram-secret-1"
POINTS_PER_ENTITY = 100


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Iterator[Certificates]:
    """A broker of its own with the TLS and SCRAM listeners of deploy/, and the certificates it trusts."""
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    env = {**os.environ, "OMNISTREAM_KAFKA_PORT": str(PORT), "OMNISTREAM_KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT),
           "OMNISTREAM_KAFKA_SECURITY": "1", "OMNISTREAM_KAFKA_SSL_PORT": str(SSL_PORT),
           "OMNISTREAM_KAFKA_SASL_PORT": str(SASL_PORT), "OMNISTREAM_KAFKA_CERTS": str(certs.folder),
           "OMNISTREAM_KAFKA_SCRAM_USER": USER, "OMNISTREAM_KAFKA_SCRAM_PASSWORD": PASSWORD}
    for action in ("reset", "start"):
        subprocess.run([str(BROKER), action], check=True, env=env, timeout=300)
    yield certs
    subprocess.run([str(BROKER), "stop"], check=True, env=env, timeout=120)


def mutual_tls(certs: Certificates) -> tuple[str, dict[str, str]]:
    """Bootstrap and librdkafka settings of the TLS listener, with the client's certificate."""
    return f"127.0.0.1:{SSL_PORT}", {"security.protocol": "SSL", "ssl.ca.location": str(certs.ca),
                                     "ssl.certificate.location": str(certs.client),
                                     "ssl.key.location": str(certs.client_key)}


def scram(certs: Certificates, password: str = PASSWORD) -> tuple[str, dict[str, str]]:
    """Bootstrap and librdkafka settings of the SCRAM listener; `sasl.mechanisms` is librdkafka's own spelling."""
    return f"127.0.0.1:{SASL_PORT}", {"security.protocol": "SASL_SSL", "ssl.ca.location": str(certs.ca),
                                      "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": USER,
                                      "sasl.password": password}


def demo_records(limit: int) -> list[dict]:
    """The first ``limit`` points of each server of the bundled demo data (deploy/demo)."""
    seen: Counter[str] = Counter()
    kept = []
    with gzip.open(REPO / "deploy" / "demo" / "asd-demo.jsonl.gz", "rb") as f:
        for record in map(orjson.loads, f):
            seen[record["entity"]] += 1
            if seen[record["entity"]] <= limit:
                kept.append(record)
    return kept


def expected_scores(records: list[dict]) -> dict[tuple[str, float], float]:
    """(entity, ts) -> score, as the worker's processor computes them in this process."""
    store = ModelStore(MODELS)
    store.refresh()
    points = [Point(r["entity"], r["ts"], r["metrics"], "", 0) for r in records]
    return {(s.entity, s.ts): s.score for s in Processor(Settings(), store).process(points).scores}


@pytest.mark.parametrize("listener", [mutual_tls, scram])
def test_the_worker_scores_what_is_replayed_through_a_secured_listener(listener, certificates, topic_prefix,
                                                                       tmp_path):
    bootstrap, security = listener(certificates)
    settings = Settings(kafka={"bootstrap": bootstrap, "topic_prefix": topic_prefix, "security": security})
    records = demo_records(POINTS_PER_ENTITY)
    entities = sorted({r["entity"] for r in records})
    expected = expected_scores(records)
    assert len(entities) == 3 and expected
    ensure_topics(settings, extra=tuple(f"metrics.{e}" for e in entities))  # the admin client
    assert metric_topics(settings) == [f"{topic_prefix}metrics", *(f"{topic_prefix}metrics.{e}" for e in entities)]
    worker = start_worker(bootstrap, topic_prefix, MODELS, tmp_path,
                          env={"OMNISTREAM_KAFKA__SECURITY": json.dumps(security),
                               "OMNISTREAM_DECIDE__PUBLISH_SCORES": "true"}).start()
    try:
        assert replay(records, client_config(settings), topic_prefix) == len(records)  # the producer
        messages = consume(bootstrap, f"{topic_prefix}scores", lambda m: len(m) >= len(expected), timeout=90,
                           security=security)
    finally:
        worker.stop()
    scores = {(r["entity"], r["ts"]): r["score"] for r in (orjson.loads(m.value()) for m in messages)}
    assert scores.keys() == expected.keys()
    assert all(scores[k] == pytest.approx(v, rel=1e-5) for k, v in expected.items())


def test_the_tls_listener_wants_a_client_certificate(certificates):
    bootstrap, security = mutual_tls(certificates)
    anonymous = {k: v for k, v in security.items() if not k.startswith(("ssl.certificate", "ssl.key"))}
    with pytest.raises(KafkaException, match="certificate"):
        metric_topics(Settings(kafka={"bootstrap": bootstrap, "security": anonymous}), timeout=3)


def test_a_wrong_password_is_reported_as_refused_credentials(certificates, topic_prefix, tmp_path):
    bootstrap, security = scram(certificates, password="not-the-password")
    with pytest.raises(KafkaException) as failure:
        ensure_topics(Settings(kafka={"bootstrap": bootstrap, "topic_prefix": topic_prefix, "security": security}))
    assert refused(failure.value) and "authentication failed" in str(failure.value).lower()

    worker = start_worker(bootstrap, topic_prefix, MODELS, tmp_path,
                          env={"OMNISTREAM_KAFKA__SECURITY": json.dumps(security)})
    with pytest.raises(RuntimeError, match="exited with 2"):
        worker.start(timeout=60)
    log = " ".join(worker.tail().split())  # the console wraps long lines
    assert "refused the credentials (authentication or authorization failed)" in log, log
    assert "cannot reach" not in log
