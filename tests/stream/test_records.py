import math

import orjson
import pytest

from omnistream.stream.records import AnomalyEvent, RecordError, entity_from_topic, json_schemas, parse_metric_record


def test_entity_from_topic_name_record_or_key():
    assert entity_from_topic("p.metrics.web-1", "p.") == "web-1"
    assert entity_from_topic("p.metrics", "p.") is None and entity_from_topic("other", "") is None
    ok = parse_metric_record(b'{"ts": 10, "metrics": {"cpu": NaN, "mem": null, "io": 3}}', None, "metrics.db-1")
    assert ok.entity == "db-1" and math.isnan(ok.metrics["cpu"]) and ok.metrics["mem"] is None
    assert parse_metric_record(b'{"ts": 10, "metrics": {"cpu": 1}}', b"k-1", "metrics").entity == "k-1"


@pytest.mark.parametrize("value, topic, reason", [
    (b"{nope", "metrics.a", "Invalid JSON"),
    (b"[1, 2]", "metrics.a", "should be an object"),
    (b'{"ts": 1, "metrics": {"cpu": 1}}', "metrics", "entity: missing"),
    (b'{"entity": "b", "ts": 1, "metrics": {"cpu": 1}}', "metrics.a", "but topic"),
    (b'{"ts": "1", "metrics": {"cpu": 1}}', "metrics.a", "ts:"),
    (b'{"ts": true, "metrics": {"cpu": 1}}', "metrics.a", "ts:"),
    (b'{"ts": NaN, "metrics": {"cpu": 1}}', "metrics.a", "finite"),
    (b'{"ts": -5, "metrics": {"cpu": 1}}', "metrics.a", "positive"),
    (b'{"ts": 1, "metrics": {}}', "metrics.a", "metrics:"),
    (b'{"ts": 1, "metrics": {"cpu": "high"}}', "metrics.a", "metrics.cpu"),
    (b'{"ts": 1, "metrics": {"cpu": Infinity}}', "metrics.a", "infinite"),
    (b'{"entity": "a\\u0001", "ts": 1, "metrics": {"cpu": 1}}', "metrics", "letters, digits"),
    ('{"entity": "web\u202e1", "ts": 1, "metrics": {"cpu": 1}}'.encode(), "metrics", "letters, digits"),  # bidi
    ('{"entity": "web\u200b1", "ts": 1, "metrics": {"cpu": 1}}'.encode(), "metrics", "letters, digits"),  # zero-width
    (b'{"ts": 1, "metrics": {"cpu": 1}}', "metrics.a b", "letters, digits"),  # from the topic name
    (b'{"ts": 1, "metrics": {"cpu load": 1}}', "metrics.a", "metric name"),
    (b'{"ts": 1, "metrics": {"cpu": 1e308}}', "metrics.a", "float32 range"),
    (b'{"ts": 1, "metrics": {"cpu": 123456789012345678901234567890123456789012}}', "metrics.a", "float32 range"),
    (None, "metrics.a", "tombstone"),
])
def test_bad_records_say_why(value, topic, reason):
    with pytest.raises(RecordError, match=reason):
        parse_metric_record(value, None, topic)


def test_schemas_cover_every_topic():
    schemas = json_schemas()
    assert set(schemas) == {"metrics", "anomalies", "scores", "transfer-requests", "models", "transfer-status",
                            "topology"}
    assert {"sha256", "strategy", "entity"} <= set(schemas["models"]["properties"])
    assert {"event_id", "calibrated_score"} <= set(schemas["anomalies"]["required"])
    assert "calibrated_score" in schemas["scores"]["required"]
    event = AnomalyEvent(event_id="x", entity="e", state="open", ts=1.0, window=(0.0, 1.0), score=2.0,
                         threshold=1.0, calibrated_score=1.5, model={"name": "dcvae", "version": "1"},
                         top_metrics=[])
    assert orjson.loads(event.model_dump_json())["window"] == [0.0, 1.0]


def test_limits_on_size_names_and_time():
    many = {f"m{i}": 1.0 for i in range(1001)}
    with pytest.raises(RecordError, match="metrics:"):
        parse_metric_record(orjson.dumps({"ts": 1, "metrics": many}), None, "metrics.a")
    with pytest.raises(RecordError, match="entity:"):
        parse_metric_record(b'{"ts": 1, "metrics": {"cpu": 1}}', b"k" * 100_000, "metrics")
    future = b'{"ts": 4102444800, "metrics": {"cpu": 1}}'  # 2100-01-01
    with pytest.raises(RecordError, match="in the future"):
        parse_metric_record(future, None, "metrics.a", max_future=86400, now=1.7e9)
    assert parse_metric_record(future, None, "metrics.a").ts == 4102444800  # no horizon given
    ok = parse_metric_record('{"ts": 1, "metrics": {"cpu.üsage/ç": 1}}'.encode(), None, "metrics.höst-1:a@b")
    assert ok.entity == "höst-1:a@b"
