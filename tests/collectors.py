"""omnistream records written as the collectors write them, with the formats' own libraries
where Python has one (influxdb-client for line protocol, opentelemetry-proto for OTLP); the
JSON forms of Telegraf and prometheus-kafka-adapter have none and are written here as their
documentation specifies. Shared by the ingest tests and bench/collectors.py.

Each function takes records ``{"entity", "ts", "metrics"}`` and returns message values; a
record's metrics are spread over several messages (one per metric, or per OTLP batch), each
sample stamped up to ``jitter`` seconds after the record's time, as scrapes drift.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import orjson
from influxdb_client import Point as InfluxPoint
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK


def _samples(records: list[dict], jitter: float, seed: int = 0):
    """(entity, metric, ts, value) of every metric of every record, in record order."""
    rng = np.random.default_rng(seed)
    for r in records:
        for metric, value in r["metrics"].items():
            yield r["entity"], metric, r["ts"] + float(rng.integers(0, jitter + 1)) if jitter else r["ts"], value


def telegraf_json(records: list[dict], jitter: float = 0.0, tag: str = "host") -> list[bytes]:
    """One message per metric, Telegraf's JSON serializer (``json_timestamp_units = "1s"``),
    measurement ``asd`` with one field per metric (so ``name_template: "{field}"`` names it)."""
    return [orjson.dumps({"name": "asd", "tags": {tag: e}, "fields": {m: v}, "timestamp": int(ts)})
            for e, m, ts, v in _samples(records, jitter) if v is not None and not math.isnan(v)]


def influx_lines(records: list[dict], jitter: float = 0.0, tag: str = "host") -> list[bytes]:
    """One message per metric in line protocol (nanoseconds), written by influxdb-client."""
    return [InfluxPoint("asd").tag(tag, e).field(m, float(v)).time(int(ts) * 1_000_000_000).to_line_protocol().encode()
            for e, m, ts, v in _samples(records, jitter) if v is not None and not math.isnan(v)]


def prometheus_json(records: list[dict], jitter: float = 0.0, label: str = "instance") -> list[bytes]:
    """One sample per message as prometheus-kafka-adapter writes it: the value a string (Go's
    FormatFloat: shortest round-trip digits, NaN for missing), the timestamp RFC 3339."""
    out = []
    for e, m, ts, v in _samples(records, jitter):
        value = "NaN" if v is None or math.isnan(v) else repr(float(v))
        stamp = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
        out.append(orjson.dumps({"labels": {"__name__": m, label: e, "job": "asd"}, "name": m, "value": value,
                                 "timestamp": stamp}))
    return out


def otlp_requests(records: list[dict], jitter: float = 0.0, per_request: int = 4,
                  attribute: str = "service.name", extra: dict | None = None) -> list[ExportMetricsServiceRequest]:
    """Export requests of ``per_request`` records each (one resource per record's entity, one
    gauge per metric), as the collector's batch processor sends them; ``extra``: metric name ->
    value added to the first record of each request (e.g. an infinite one)."""
    requests = []
    for start in range(0, len(records), per_request):
        request = ExportMetricsServiceRequest()
        for i, r in enumerate(records[start:start + per_request]):
            resource = request.resource_metrics.add()
            attr = resource.resource.attributes.add()
            attr.key, attr.value.string_value = attribute, r["entity"]
            scope = resource.scope_metrics.add()
            scope.scope.name = "omnistream.tests"
            metrics = {**r["metrics"], **((extra or {}) if i == 0 else {})}
            for _, m, ts, v in _samples([{**r, "metrics": metrics}], jitter, seed=start + i):
                metric = scope.metrics.add()
                metric.name = m
                point = metric.gauge.data_points.add()
                point.time_unix_nano = int(ts) * 1_000_000_000
                if v is None or math.isnan(v):
                    point.flags = NO_RECORDED_VALUE
                else:
                    point.as_double = v
        requests.append(request)
    return requests


def otlp_proto(records: list[dict], jitter: float = 0.0, **kwargs) -> list[bytes]:
    return [r.SerializeToString() for r in otlp_requests(records, jitter, **kwargs)]


def otlp_json(records: list[dict], jitter: float = 0.0, **kwargs) -> list[bytes]:
    from google.protobuf import json_format

    return [json_format.MessageToJson(r).encode() for r in otlp_requests(records, jitter, **kwargs)]
