"""ASD through the real broker: replay -> worker -> anomalies / DLQ / transfer requests, and
a worker killed mid-stream that resumes from its changelog without changing the events."""

from __future__ import annotations

import time
import urllib.request
import uuid

import orjson
import pytest
from confluent_kafka.admin import AdminClient
from streams import consume, start_worker

from omnistream.offline.datasets import metric_names
from omnistream.stream.config import Settings
from omnistream.stream.points import Point
from omnistream.stream.processor import Processor
from omnistream.cli.replay import record_topic, replay
from omnistream.stream.scorer import ModelStore

pytestmark = pytest.mark.e2e
N_POINTS = 800  # through labelled anomalies of both servers (omi-2 at 486, omi-1 at 760)
METRICS_PORT = 19108
START_TS = 1_700_000_000.0


def asd_records(asd_series, stop=N_POINTS, start=0):
    out = []
    for i in range(start, stop):
        for entity, series in asd_series.items():
            names = metric_names(series.test.shape[1])
            out.append({"entity": entity, "ts": START_TS + 300 * i,
                        "metrics": dict(zip(names, series.test[i].tolist()))})
    return out


def expected_events(folder, records):
    store = ModelStore(folder)
    store.refresh()
    points = [Point(r["entity"], r["ts"], r["metrics"], "", 0) for r in records]
    return {e.event_id for e in Processor(Settings(), store).process(points).anomalies}


def ids(messages):
    return {orjson.loads(m.value())["event_id"] for m in messages}


@pytest.fixture
def worker(kafka_bootstrap, topic_prefix, trained_models, tmp_path):
    w = start_worker(kafka_bootstrap, topic_prefix, trained_models[0], tmp_path, metrics_port=METRICS_PORT)
    yield w
    w.stop()


def test_asd_replay_yields_the_expected_events_dlq_and_transfer_requests(kafka_bootstrap, topic_prefix,
                                                                       trained_models, asd_series, worker, tmp_path):
    records = asd_records(asd_series)
    expected = expected_events(trained_models[0], records)
    assert expected, "the models should flag something in the first ASD test points"
    worker.start()
    bad = [b"{not json", orjson.dumps({"entity": "omi-1", "ts": "yesterday", "metrics": {"m00": 1}}),
           orjson.dumps({"ts": 5.0, "metrics": {"m00": "high"}}), orjson.dumps({"ts": 5.0, "metrics": {"m00": 1}})]
    newcomer = [{"entity": "brand-new", "ts": START_TS + i, "metrics": {"cpu": 0.5}} for i in range(3)]
    config = {"bootstrap.servers": kafka_bootstrap}
    assert replay(records + newcomer, config, topic_prefix) == len(records) + 3
    assert replay(bad, config, topic_prefix) == len(bad)

    events = consume(kafka_bootstrap, f"{topic_prefix}anomalies", lambda m: ids(m) >= expected)
    assert ids(events) == expected
    for m in events:
        event = orjson.loads(m.value())
        assert m.key().decode() == event["entity"] and event["state"] in ("open", "ongoing", "resolved")
        assert event["top_metrics"] and event["window"][0] < event["window"][1]

    dead = consume(kafka_bootstrap, f"{topic_prefix}metrics-dlq", lambda m: len(m) >= len(bad), timeout=60)
    assert sorted(m.value() for m in dead) == sorted(bad)
    errors = {dict(m.headers())["error"].decode() for m in dead}
    assert any("Invalid JSON" in e for e in errors) and any(e.startswith("ts:") for e in errors)
    assert any(e.startswith("metrics.m00") for e in errors) and any(e.startswith("entity: missing") for e in errors)
    assert all(dict(m.headers())["source.topic"] == f"{topic_prefix}metrics".encode() for m in dead)

    requests = consume(kafka_bootstrap, f"{topic_prefix}transfer-requests", lambda m: len(m) >= 1, timeout=60)
    request = orjson.loads(requests[0].value())
    assert request["entity"] == "brand-new" and request["reason"] == "new_entity"
    assert request["data"]["topic"] == f"{topic_prefix}metrics.brand-new"

    # Both servers' per-entity topics count as such, the bad records as shared. Every record reaching
    # the windows is checked score by score in test_faults; this checks the labels and the bulk. The
    # ingest process's counters reach /metrics with its status lines (twice a second): wait for them.
    deadline = time.monotonic() + 30
    while True:
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).read().decode()
        consumed = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("omnistream_records_in_total{")}
        dlq_lines = [line for line in metrics.splitlines() if line.startswith("omnistream_records_dlq_total{")]
        complete = consumed.get("entity_topic", 0) >= 2 * N_POINTS and consumed.get("shared", 0) >= len(bad) \
            and sum(float(line.rsplit(" ", 1)[1]) for line in dlq_lines) >= len(bad)
        if complete or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {line.split('"')[1] for line in dlq_lines} <= {"entity", "ts", "metrics", "size", "record"}
    assert set(consumed) <= {"entity_topic", "shared"}
    restarts = next(float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith("omnistream_worker_restarts "))
    if restarts == 0:  # counters live as long as the Faust process: the bulk holds only without a restart
        assert consumed["entity_topic"] >= 2 * N_POINTS and consumed["shared"] >= len(bad)
        assert sum(float(line.rsplit(" ", 1)[1]) for line in dlq_lines) == len(bad)
    else:  # the one restart this run may see: a guard stopping the worker before records it skipped
        log = worker.log_path.read_text(errors="replace")
        assert "the consumer skipped records" in log or "consumption stalled" in log, worker.tail()
    assert "omnistream_models_loaded 2.0" in metrics and "omnistream_model_folder_empty 0.0" in metrics

    recorded = tmp_path / "anomalies.jsonl"
    assert record_topic(f"{topic_prefix}anomalies", recorded, config, idle_seconds=2.0) == len(events)
    assert {orjson.loads(line)["event_id"] for line in recorded.read_bytes().splitlines()} == expected


def test_killed_worker_resumes_without_changing_events(kafka_bootstrap, topic_prefix, trained_models,
                                                       asd_series, worker):
    records = asd_records(asd_series)
    expected = expected_events(trained_models[0], records)
    config = {"bootstrap.servers": kafka_bootstrap}
    half = len(records) // 2
    replay(records[:half], config, topic_prefix)
    worker.start()
    time.sleep(4.0)  # let it process part of the stream, then kill it without warning
    worker.kill()
    replay(records[half:], config, topic_prefix)
    worker.start()
    events = consume(kafka_bootstrap, f"{topic_prefix}anomalies", lambda m: ids(m) >= expected)
    assert ids(events) == expected  # redelivery may repeat an event, never change one


def test_two_deployments_on_one_broker_keep_their_state_apart(kafka_bootstrap, trained_models, asd_series,
                                                             tmp_path):
    """The same entities under two prefixes, each deployment with its own part of the data and
    the default app id: each publishes exactly the events of its own data alone."""
    run = uuid.uuid4().hex[:6]
    parts = {f"a{run}.": asd_records(asd_series, 400), f"b{run}.": asd_records(asd_series, 800, 400)}
    workers = []
    try:
        for prefix in parts:
            (tmp_path / prefix).mkdir()
            workers.append(start_worker(kafka_bootstrap, prefix, trained_models[0], tmp_path / prefix,
                                        app_id=False).start())
        config = {"bootstrap.servers": kafka_bootstrap}
        for prefix, records in parts.items():
            replay(records, config, prefix)
        for prefix, records in parts.items():
            expected = expected_events(trained_models[0], records)
            assert expected
            events = consume(kafka_bootstrap, f"{prefix}anomalies", lambda m, e=expected: ids(m) >= e)
            assert ids(events) == expected
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        topics = admin.list_topics(timeout=30).topics
        groups = {g.group_id for g in admin.list_consumer_groups().result(30).valid}
        for prefix in parts:
            assert f"{prefix}omnistream" in groups and f"{prefix}omnistream-windows-changelog" in topics
    finally:
        for w in workers:
            w.stop()


def ingest_holders(log_path) -> set[str]:
    """The pids of the ingest processes that have held metric partitions, from the worker's log."""
    return {line.split("] [")[1] for line in log_path.read_text(errors="replace").splitlines()
            if "ingest: " in line and " source partitions held" in line and "ingest: 0 " not in line}


def test_two_worker_processes_share_the_work_and_yield_the_same_events(kafka_bootstrap, topic_prefix,
                                                                      trained_models, asd_series, tmp_path):
    """`worker --processes 2`: two members of the deployment's groups, each with its own state
    folder and metrics port, publish together exactly the events of one process."""
    records = asd_records(asd_series)
    expected = expected_events(trained_models[0], records)
    port = METRICS_PORT + 2
    worker = start_worker(kafka_bootstrap, topic_prefix, trained_models[0], tmp_path, metrics_port=port, processes=2)
    try:
        worker.start()
        deadline = time.monotonic() + 60  # each worker's ingest process joins the group on its own
        while len(ingest_holders(worker.log_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(ingest_holders(worker.log_path)) == 2, worker.tail()  # both got metric partitions
        replay(records, {"bootstrap.servers": kafka_bootstrap}, topic_prefix)
        events = consume(kafka_bootstrap, f"{topic_prefix}anomalies", lambda m: ids(m) >= expected)
        assert ids(events) == expected
        deadline = time.monotonic() + 30  # the ingest processes' counters arrive twice a second
        while True:
            consumed = 0.0
            for p in (port, port + 1):  # both processes answer, each on its own port
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=10).read().decode()
                consumed += sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                                if line.startswith("omnistream_records_in_total{"))
            if consumed >= len(records) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert consumed >= len(records)  # a batch read again after a rebalance may count twice
        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["process-0", "process-1"]
    finally:
        worker.stop()
