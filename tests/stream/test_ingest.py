"""A batch of source messages routed without Kafka: native records validated and packed by
entity, collector messages decoded and mapped, and what is refused set aside with its reason."""

from __future__ import annotations

import orjson

from omnistream.stream.config import Settings
from omnistream.stream.ingest import Ingest, SourceMessage
from omnistream.stream.points import unpack_points

TS = 1_700_000_100.0


def message(topic: str, value: bytes | None, key: bytes | None = None, partition: int = 0, offset: int = 0,
            timestamp: float | None = 1_700_000_200.0) -> SourceMessage:
    return SourceMessage(key, value, topic, partition, offset, timestamp)


def test_native_and_collector_messages_are_routed_and_the_refused_kept_with_reasons():
    settings = Settings(sources=[{"topic": "telegraf", "format": "influx_line"}])
    lines = b"cpu,host=a usage=1 1700000100000000000\ncpu,host=a idle=+Inf 1700000100000000000"
    routed = Ingest(settings).route([
        message("metrics.web-1", orjson.dumps({"ts": TS, "metrics": {"cpu": 0.5}})),
        message("metrics", b"{not json", offset=7),
        message("telegraf", lines, offset=3),
        message("telegraf", b"\xff\xfe", offset=4),
    ])
    assert [key for key, _ in routed.points] == [b"web-1", b"a"]
    points, samples = unpack_points((value, 0, i) for i, (_, value) in enumerate(routed.points))
    assert [(p.entity, p.ts, p.metrics, p.received) for p in points] == [("web-1", TS, {"cpu": 0.5}, 1_700_000_200.0)]
    assert [(s.entity, s.samples) for s in samples] == [("a", [["cpu_usage", TS, 1.0, "g", None, None]])]
    errors = [(dict(d.headers)["source.offset"], dict(d.headers)["error"].decode()) for d in routed.dead]
    assert errors[0] == (b"7", "record: Invalid JSON: key must be a string at line 1 column 2")
    assert errors[1][0] == b"3" and errors[1][1].startswith("1 samples refused: line 2:")
    assert dict(routed.dead[1].headers)["samples.used"] == b"1"
    assert errors[2] == (b"4", "influx_line: line protocol is not UTF-8: 'utf-8' codec can't decode byte 0xff in "
                               "position 0: invalid start byte")
