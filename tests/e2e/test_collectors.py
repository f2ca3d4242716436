"""ASD through the collectors' own formats on the real broker: Telegraf (JSON and line
protocol), prometheus-kafka-adapter and OTLP (protobuf and JSON), one metric per message (a
batch for OTLP), samples drifting within a step and messages out of order within the
lateness. The worker assembles one point per entity per step and must publish exactly the
events of the same points given in omnistream's own format; bad input of each format lands
in the dead-letter topic with its reason, the rest of its message kept."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from collectors import influx_lines, otlp_json, otlp_proto, prometheus_json, telegraf_json
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from streams import consume, start_worker

from omnistream.offline.datasets import metric_names
from omnistream.offline.fit import export_fitted, model_info
from omnistream.stream.config import Settings
from omnistream.stream.points import Point
from omnistream.stream.processor import Processor
from omnistream.stream.scorer import ModelStore

pytestmark = pytest.mark.e2e
N_POINTS = 500  # past omi-2's labelled anomaly at 486
STEP = 300.0
START_TS = 1_700_000_100.0  # on the 300 s grid: an assembled point keeps its record's time
# format -> (writer, entity label, mapping, partitions of its topic, keyed by entity)
FORMATS = {
    "telegraf_json": (telegraf_json, "host", {"name_template": "{field}"}, 4, True),  # Telegraf's routing_tag
    "influx_line": (influx_lines, "host", {"name_template": "{field}"}, 1, False),
    "prometheus_json": (prometheus_json, "instance", {}, 1, False),
    "otlp_proto": (otlp_proto, "service.name", {}, 1, False),
    "otlp_json": (otlp_json, "service.name", {}, 1, False),
}
BAD = {
    "telegraf_json": [orjson.dumps({"name": "asd", "tags": {"host": "x"}, "fields": {"m00": 1.0},
                                    "timestamp": int(START_TS * 1000)})],  # milliseconds, the source says seconds
    "influx_line": [b"asd,host=x\\ m00=1 1700000100000000000"],  # an escape that eats the separator
    "prometheus_json": [orjson.dumps({"labels": {"__name__": "m00", "pod": "x"}, "name": "m00", "value": "1",
                                      "timestamp": "2023-11-14T22:15:00Z"}),  # no entity label
                        orjson.dumps({"labels": {"__name__": "m00", "instance": "prometheus_json-omi-1"},
                                      "name": "m00", "value": "+Inf", "timestamp": "2023-11-14T22:15:00Z"})],
    "otlp_proto": [b"\x0a\x05\x0a\x03"],  # truncated protobuf
    "otlp_json": [b'{"resourceMetrics": [{"resource": '],
}


def entity(fmt: str, server: str) -> str:
    return f"{fmt}-{server}"


def records_of(asd_series, fmt: str) -> list[dict]:
    out = []
    for i in range(N_POINTS):
        for server, series in asd_series.items():
            names = metric_names(series.test.shape[1])
            out.append({"entity": entity(fmt, server), "ts": START_TS + STEP * i,
                        "metrics": dict(zip(names, series.test[i].tolist()))})
    return out


def out_of_order(messages: list[bytes], per_step: int, seed: int) -> list[bytes]:
    """Shuffled within blocks of two steps: within a lateness of one step, never late."""
    rng = np.random.default_rng(seed)
    block = 2 * per_step
    out = []
    for start in range(0, len(messages), block):
        part = messages[start:start + block]
        out += [part[i] for i in rng.permutation(len(part))]
    return out


@pytest.fixture
def models(asd_series, asd_fitted, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for fmt in FORMATS:
        for server, series in asd_series.items():
            fitted = asd_fitted[server]
            name = entity(fmt, server)
            export_fitted(fitted, folder / f"{name}.pt",
                          model_info(fitted, metric_names(series.train.shape[1]), entity=name), series.test)
    return folder


def test_every_collector_format_gives_the_events_of_the_native_format(kafka_bootstrap, topic_prefix, asd_series,
                                                                     models, tmp_path):
    store = ModelStore(models)
    store.refresh()
    records = {fmt: records_of(asd_series, fmt) for fmt in FORMATS}
    # The last two steps stay open: nothing later arrives to close them (lateness: one step).
    closed = [r for fmt in FORMATS for r in records[fmt][: -2 * len(asd_series)]]
    expected = {e.event_id for e in Processor(Settings(), store).process(
        [Point(r["entity"], r["ts"], r["metrics"], "", 0) for r in closed]).anomalies}
    assert {e.split("-omi")[0] for e in {r["entity"] for r in closed}} == set(FORMATS)
    assert expected, "the models should flag something in the first ASD test points"

    topics = {fmt: f"{topic_prefix}collector.{fmt}" for fmt in FORMATS}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topics[fmt], num_partitions=FORMATS[fmt][3], replication_factor=1)
                                       for fmt in FORMATS]).values():
        future.result(30)
    sources = [{"topic": topics[fmt], "format": fmt, "entity": [label], "step_seconds": STEP,
                "lateness_seconds": STEP, **mapping} for fmt, (_, label, mapping, _, _) in FORMATS.items()]
    worker = start_worker(kafka_bootstrap, topic_prefix, models, tmp_path,
                          env={"OMNISTREAM_SOURCES": orjson.dumps(sources).decode(), "OMNISTREAM_LOG_FORMAT": "json"})
    try:
        worker.start()
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
        sent = 0
        for seed, (fmt, (write, label, _, _, keyed)) in enumerate(FORMATS.items()):
            if fmt.startswith("otlp"):
                messages = write(records[fmt], jitter=5.0, attribute=label, per_request=4,
                                 extra={"bad": math.inf})  # one infinite point per batch, refused alone
            else:
                named = {"label": label} if fmt == "prometheus_json" else {"tag": label}
                messages = out_of_order(write(records[fmt], jitter=5.0, **named), per_step=19 * len(asd_series),
                                        seed=seed)
            for value in messages + BAD[fmt]:
                key = orjson.loads(value)["tags"]["host"].encode() if keyed else None
                producer.produce(topics[fmt], value=value, key=key)
                producer.poll(0)
                sent += 1
        assert producer.flush(60) == 0

        def ids(messages):
            return {orjson.loads(m.value())["event_id"] for m in messages}

        events = consume(kafka_bootstrap, f"{topic_prefix}anomalies", lambda m: ids(m) >= expected, timeout=300)
        assert ids(events) == expected, worker.tail()
        otlp_batches = sum(math.ceil(len(records[f]) / 4) for f in FORMATS if f.startswith("otlp"))
        n_bad = sum(len(b) for b in BAD.values()) + otlp_batches
        dead = consume(kafka_bootstrap, f"{topic_prefix}metrics-dlq", lambda m: len(m) >= n_bad, timeout=60)
        assert len(dead) == n_bad
        errors = {}
        for m in dead:
            headers = dict(m.headers())
            errors.setdefault(headers["source.topic"].decode(), []).append(headers["error"].decode())
        assert "wrong unit" in errors[topics["telegraf_json"]][0]
        assert errors[topics["influx_line"]][0].startswith("1 samples refused: line 1:")
        assert sorted(errors[topics["prometheus_json"]]) == [
            "1 samples refused: m00: no entity label (instance) among pod",
            "1 samples refused: m00: value inf is infinite"]
        for fmt in ("otlp_proto", "otlp_json"):
            refused = errors[topics[fmt]].count("1 samples refused: bad: value inf is infinite")
            assert refused == math.ceil(len(records[fmt]) / 4)
        logged = [orjson.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
        assert any(line["message"] == "[^Worker]: Ready" for line in logged)  # log_format: json
        assert any("protobuf" in e for e in errors[topics["otlp_proto"]])
        assert any(e.startswith("otlp_json: not an OTLP") for e in errors[topics["otlp_json"]])
    finally:
        worker.stop()
