"""OmniTransfer on the real broker: a new entity's first points -> transfer request -> the
transfer service cold-starts it on its cluster's base model, then transfers and announces
its own model -> the worker hot-loads each -> the entity's events name the model that scored
them. Bad input (missing metrics, a forged announcement) leaves a status and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
from confluent_kafka import Producer
from fleets import METRICS, clustered_fleet
import prometheus
from streams import consume, start_worker, stopped_by_sigterm

from omnistream.stream.records import ModelAnnouncement, dumps

pytestmark = pytest.mark.e2e
START_TS = 1_700_000_000.0
POINTS = 300  # the transfer waits for this many points of the new entity
WORKER_METRICS, SERVICE_METRICS, PROMETHEUS_PORT = 19120, 19121, 19190


@pytest.fixture(scope="module")
def base_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clusters")
    x = clustered_fleet(folder, 24, 1, seed=3)
    newcomer = x[24].copy()
    for start in (150, 460):  # incidents: one while cold-started, one after the transfer
        newcomer[start:start + 6] += 12 * newcomer.std(axis=0)
    return folder, newcomer


def check_operations(folder) -> None:
    """Prometheus scraping the worker and the service: the alert rules pass promtool, and every
    rule's compared expression and every dashboard panel's expression evaluates to data."""
    if not prometheus.available():
        assert not prometheus.required(), "prometheus and promtool are not installed (apt install prometheus)"
        print("\nprometheus is not installed: the rules and the dashboard were not checked")
        return
    assert "SUCCESS: 12 rules found" in prometheus.check_rules_file()
    server = prometheus.Prometheus(folder, PROMETHEUS_PORT, {"omnistream": f"127.0.0.1:{WORKER_METRICS}",
                                                            "omnistream-transfer": f"127.0.0.1:{SERVICE_METRICS}"})
    try:
        assert len(server.wait_for('up == 1 and count_over_time(up[1m]) >= 3', series=2)) == 2
        empty = []
        for where, expr in prometheus.expressions().items():
            sides = prometheus.compared(expr) if where.startswith("rule") else [expr]
            for side in sides:
                reply = server.query(side)
                assert reply["status"] == "success", (where, side, reply)
                if not reply["data"]["result"]:
                    empty.append(f"{where}: {side}")
        assert empty == [], empty
    finally:
        server.stop()


def start_service(bootstrap, prefix, clusters, models, tmp, metrics_port: int = 0, **extra_env: str):
    log = open(tmp / "transfer.log", "wb")
    env = {**os.environ, **extra_env, "OMNISTREAM_APP_ID": f"app-{prefix.rstrip('.')}",
           "OMNISTREAM_TRANSFER__RETRY_EVERY": "1",
           "OMNISTREAM_TRANSFER__FULL_EPOCHS": "3", "OMNISTREAM_TRANSFER__HEAD_EPOCHS": "3",
           "OMNISTREAM_TRANSFER__ALL_EPOCHS": "2"}
    return subprocess.Popen([sys.executable, "-m", "omnistream.cli.main", "transfer", "--bootstrap", bootstrap,
                             "--prefix", prefix, "--clusters", str(clusters), "--model-dir", str(models),
                             "--points", str(POINTS), "--metrics-port", str(metrics_port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def send(producer, topic, entity, series, start, stop, names=METRICS):
    for i in range(start, stop):
        record = {"entity": entity, "ts": START_TS + 60 * i, "metrics": dict(zip(names, series[i].tolist()))}
        producer.produce(topic, key=entity.encode(), value=orjson.dumps(record))
    producer.flush(30)


def announcements(bootstrap, prefix, entity, strategies, need=all, timeout=300):
    """The `models` topic until ``need`` (all / any) of ``strategies`` were announced for ``entity``."""
    def done(messages):
        seen = {a["strategy"] for a in (orjson.loads(m.value()) for m in messages) if a["entity"] == entity}
        return need(s in seen for s in strategies)
    return [orjson.loads(m.value()) for m in consume(bootstrap, f"{prefix}models", done, timeout)]


def test_new_entity_is_cold_started_then_transferred_and_served(kafka_bootstrap, topic_prefix, base_models, tmp_path):
    clusters, newcomer = base_models
    models = tmp_path / "models"
    models.mkdir()
    worker = start_worker(kafka_bootstrap, topic_prefix, models, tmp_path, metrics_port=WORKER_METRICS,
                          env={"OMNISTREAM_DECIDE__PUBLISH_SCORES": "true"}).start()
    service = start_service(kafka_bootstrap, topic_prefix, clusters, models, tmp_path,
                            metrics_port=SERVICE_METRICS)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    topic = f"{topic_prefix}metrics"
    try:
        first_point = time.time()
        send(producer, topic, "newbie", newcomer, 0, 100)
        send(producer, topic, "odd", np.random.default_rng(0).normal(size=(100, 2)), 0, 100, names=["x", "y"])
        base = next(a for a in announcements(kafka_bootstrap, topic_prefix, "newbie", {"base"})
                    if a["entity"] == "newbie")
        cold_start_s = time.time() - first_point
        assert base["cluster"] is not None and base["sha256"]
        time.sleep(2.0)  # the worker's listener loads it
        send(producer, topic, "newbie", newcomer, 100, 420)
        transferred = next(a for a in announcements(kafka_bootstrap, topic_prefix, "newbie", {"full", "partial"}, any)
                           if a["entity"] == "newbie" and a["strategy"] in ("full", "partial"))
        own_model_s = time.time() - first_point
        assert transferred["diff_score"] is not None and transferred["base_sha256"]
        assert transferred["metrics"]["points"] == POINTS
        # A forged announcement (wrong sha256) is refused; the worker keeps the transferred model.
        forged = ModelAnnouncement(**{**transferred, "sha256": "0" * 64, "version": "forged", "ts": time.time()})
        producer.produce(f"{topic_prefix}models", key=b"newbie", value=dumps(forged))
        producer.flush(10)
        time.sleep(3.0)
        send(producer, topic, "newbie", newcomer, 420, 600)

        def opened(messages):
            """(point, model) of every incident of newbie opened so far."""
            events = [orjson.loads(m.value()) for m in messages]
            return [(int((e["ts"] - START_TS) // 60), e["model"]) for e in events
                    if e["entity"] == "newbie" and e["state"] == "open"]

        def scored_to_the_end(messages):
            return any(orjson.loads(m.value())["ts"] >= START_TS + 60 * 599 for m in messages)

        scores = {int((r["ts"] - START_TS) // 60): r["calibrated_score"] for r in (
            orjson.loads(m.value()) for m in consume(kafka_bootstrap, f"{topic_prefix}scores", scored_to_the_end))
            if r["entity"] == "newbie"}
        # Events are published before the scores of the same batch: all are there by now.
        incidents = opened(consume(kafka_bootstrap, f"{topic_prefix}anomalies", lambda ms: False, timeout=10))
        print("\nincidents opened (point, model):", [(i, m["strategy"], m["version"]) for i, m in incidents])
        # Points 100-299 were scored by the cluster's base model (cold start), 420 on by the transfer.
        assert any(m["strategy"] == "base" for i, m in incidents if i < 300)
        assert all(m["strategy"] == "base" and m["cluster"] == base["cluster"] for i, m in incidents if i < 300)
        assert all(m["version"] == transferred["version"] for i, m in incidents if i >= 420)
        assert max(scores[i] for i in range(150, 156)) > 1  # the first incident, seen by the base model
        after = np.array([scores[i] for i in range(420, 600) if i in scores and not 460 <= i < 482])
        spike = max(scores[i] for i in range(460, 466))
        assert spike > 1 and spike > np.quantile(after, 0.95), (spike, np.quantile(after, [0.5, 0.95]))
        statuses = [orjson.loads(m.value()) for m in consume(
            kafka_bootstrap, f"{topic_prefix}transfer-status",
            lambda ms: any(orjson.loads(m.value())["entity"] == "odd" and orjson.loads(m.value())["state"] == "failed"
                           for m in ms), timeout=60)]
        odd = [s for s in statuses if s["entity"] == "odd"][-1]
        assert odd["state"] == "failed" and "lacks metrics" in odd["detail"]
        assert "not the announced" in worker.tail(20000)
        print(f"\nfirst point -> serving base model: {cold_start_s:.1f} s; -> own {transferred['strategy']} model: "
              f"{own_model_s:.1f} s; request -> announcement: {transferred['metrics']['request_to_announce_s']:.1f} s")
        producer.produce(topic, value=b"{not json")  # a dead letter: its series exists
        producer.flush(10)
        check_operations(tmp_path / "prometheus")
    finally:
        service.terminate()
        service.wait(30)
        worker.stop()



def test_a_crashed_service_s_waiting_request_is_served_by_another(kafka_bootstrap, topic_prefix, base_models,
                                                                  tmp_path):
    clusters, newcomer = base_models
    models = tmp_path / "models"
    models.mkdir()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    request = {"request_id": "r-1", "entity": "late", "reason": "new_entity", "ts": time.time(),
               "data": {"topic": f"{topic_prefix}metrics", "from_ts": START_TS, "to_ts": START_TS}}
    first = start_service(kafka_bootstrap, topic_prefix, clusters, models, tmp_path)
    try:
        send(producer, f"{topic_prefix}metrics", "late", newcomer, 0, 100)
        producer.produce(f"{topic_prefix}transfer-requests", key=b"late", value=orjson.dumps(request))
        producer.flush(10)
        announcements(kafka_bootstrap, topic_prefix, "late", {"base"})  # it holds the request, waiting for data
    finally:
        first.kill()  # no shutdown, no commit of the waiting request
        first.wait(30)
    second = start_service(kafka_bootstrap, topic_prefix, clusters, models, tmp_path)
    try:
        send(producer, f"{topic_prefix}metrics", "late", newcomer, 100, POINTS)
        served = [a for a in announcements(kafka_bootstrap, topic_prefix, "late", {"full", "partial"}, any)
                  if a["strategy"] in ("full", "partial")]
        assert served and served[0]["entity"] == "late" and served[0]["metrics"]["points"] == POINTS
    finally:
        second.terminate()
        second.wait(30)


def test_sigterm_ends_the_service_within_its_deadline_while_the_broker_is_down(kafka_bootstrap, topic_prefix,
                                                                              base_models, tmp_path):
    service = start_service(kafka_bootstrap, topic_prefix, base_models[0], tmp_path / "models", tmp_path,
                            OMNISTREAM_SHUTDOWN_SECONDS="5")
    log = tmp_path / "transfer.log"
    deadline = time.monotonic() + 120
    while b"transfer service on" not in log.read_bytes() and time.monotonic() < deadline:
        assert service.poll() is None, log.read_text()
        time.sleep(0.2)
    code, took = stopped_by_sigterm(service, 5)
    assert code == 0 and took < 5 + 5, (took, log.read_text()[-3000:])


def test_a_collector_entity_s_points_are_gathered_from_the_internal_topic(kafka_bootstrap, topic_prefix):
    """A new entity of a collector topic has only samples: the transfer service assembles its
    points from the worker's internal topic as the worker does."""
    from omnistream.ingest.assemble import Assembler
    from omnistream.ingest.mapping import Mapped, SourceSettings
    from omnistream.stream.points import pack_samples
    from omnistream.stream.topics import POINTS
    from omnistream.transfer.gather import Gatherer

    source = SourceSettings(topic="telegraf", format="influx_line", step_seconds=60, lateness_seconds=60)
    points_topic = f"{topic_prefix}{POINTS}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    rng = np.random.default_rng(1)
    messages = {e: [] for e in ("web-1", "web-2")}
    for step in range(30):
        for entity, batch in messages.items():
            samples = [Mapped(entity, None, m, START_TS + 60 * step + 5, float(rng.normal()), "gauge", None)
                       for m in METRICS]
            batch.extend(pack_samples(entity, None, "telegraf", samples))
    for entity, batch in messages.items():
        for value in batch:
            producer.produce(points_topic, key=entity.encode(), value=value)
    producer.flush(30)
    reference = Assembler({"telegraf": source}, lambda key: None)
    expected = [p for i, value in enumerate(messages["web-1"])
                for p in reference.add("web-1", "telegraf", 0, i, orjson.loads(value)["samples"]).points]
    gatherer = Gatherer({"bootstrap.servers": kafka_bootstrap}, topic_prefix, collectors={"telegraf": source},
                        points_topic=points_topic)
    try:
        assert gatherer.points("telegraf", "web-1", 0.0) == expected and len(expected) == 28
    finally:
        gatherer.close()
