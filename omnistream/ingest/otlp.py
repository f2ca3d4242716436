"""OpenTelemetry Collector's Kafka exporter: one message is an ``ExportMetricsServiceRequest``
(``otlp_proto``, the default, or ``otlp_json``), decoded by the ``opentelemetry-proto`` classes.

Every data point becomes samples, its labels the resource's attributes overlaid by the
point's own:
- gauge: a level; sum: cumulative and monotonic, a counter (its start time marks resets);
  cumulative and not monotonic, a level; delta, a rate over its own interval;
- histogram and exponential histogram: ``<name>_count`` and ``<name>_sum`` as the sum's
  temporality says, and (explicit buckets) ``<name>_bucket`` per upper bound ``le``;
- summary: ``<name>`` per ``quantile``, ``<name>_count`` and ``<name>_sum`` (cumulative).
Names follow Prometheus's, so one mapping reads every format alike. A point flagged
``no recorded value`` is missing (NaN).
"""

from __future__ import annotations

import math

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from omnistream.ingest.mapping import SourceSettings
from omnistream.ingest.samples import Decoded, FormatError, Sample

NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
DELTA = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def _attributes(pairs) -> dict[str, str]:
    out = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        if kind in ("string_value", "int_value", "double_value", "bool_value"):
            out[pair.key] = str(getattr(pair.value, kind))
    return out


class _Points:
    """Samples of one metric's data points, into ``out``."""

    def __init__(self, out: Decoded, resource: dict[str, str], max_ts: float):
        self.out, self.resource, self.max_ts = out, resource, max_ts

    def add(self, name: str, point, value: float, kind: str, temporality: int | None = None,
            extra: dict[str, str] | None = None) -> None:
        ts, start = point.time_unix_nano * 1e-9, point.start_time_unix_nano * 1e-9
        labels = {**self.resource, **_attributes(point.attributes), **(extra or {})}
        if point.flags & NO_RECORDED_VALUE:
            value = math.nan
        if temporality == DELTA:  # an increment over [start, ts]: its rate
            if not start or ts <= start:
                self.out.errors.append(f"{name}: a delta point needs start_time_unix_nano before time_unix_nano")
                return
            value, kind = value / (ts - start), "gauge"
        self.out.add(Sample(name, labels, ts, value, kind, start if kind == "counter" and start else None),
                     self.max_ts)

    def number(self, name: str, point, kind: str, temporality: int | None = None) -> None:
        value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
        self.add(name, point, value, kind, temporality)

    def distribution(self, name: str, point, temporality: int, buckets: bool) -> None:
        kind = "counter" if temporality == CUMULATIVE else "gauge"
        self.add(f"{name}_count", point, float(point.count), kind, temporality)
        if point.HasField("sum"):
            self.add(f"{name}_sum", point, point.sum, kind, temporality)
        if buckets:  # cumulative counts per upper bound, as Prometheus's le buckets
            total = 0
            bounds = [*(repr(b) for b in point.explicit_bounds), "+Inf"]
            for bound, count in zip(bounds, point.bucket_counts):
                total += count
                self.add(f"{name}_bucket", point, float(total), kind, temporality, {"le": bound})


def _metric(points: _Points, metric) -> None:
    name, data = metric.name, metric.WhichOneof("data")
    if data == "gauge":
        for p in metric.gauge.data_points:
            points.number(name, p, "gauge")
    elif data == "sum":
        s = metric.sum
        cumulative_counter = s.aggregation_temporality == CUMULATIVE and s.is_monotonic
        for p in s.data_points:
            points.number(name, p, "counter" if cumulative_counter else "gauge",
                          DELTA if s.aggregation_temporality == DELTA else None)
    elif data == "histogram":
        for p in metric.histogram.data_points:
            points.distribution(name, p, metric.histogram.aggregation_temporality, True)
    elif data == "exponential_histogram":
        for p in metric.exponential_histogram.data_points:
            points.distribution(name, p, metric.exponential_histogram.aggregation_temporality, False)
    elif data == "summary":
        for p in metric.summary.data_points:
            points.add(f"{name}_count", p, float(p.count), "counter")
            points.add(f"{name}_sum", p, p.sum, "counter")
            for q in p.quantile_values:
                points.add(name, p, q.value, "gauge", extra={"quantile": repr(q.quantile)})


def _samples(request: ExportMetricsServiceRequest, max_ts: float) -> Decoded:
    out = Decoded()
    for resource_metrics in request.resource_metrics:
        points = _Points(out, _attributes(resource_metrics.resource.attributes), max_ts)
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                _metric(points, metric)
    if not out.samples and not out.errors:
        raise FormatError("the export request holds no data point")
    return out


def decode_proto(value: bytes, source: SourceSettings, max_ts: float, kafka_ts: float | None = None) -> Decoded:
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(value)
    except DecodeError as exc:
        raise FormatError(f"not an OTLP ExportMetricsServiceRequest (protobuf): {exc}") from None
    return _samples(request, max_ts)


def decode_json(value: bytes, source: SourceSettings, max_ts: float, kafka_ts: float | None = None) -> Decoded:
    try:
        request = json_format.Parse(value, ExportMetricsServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise FormatError(f"not an OTLP ExportMetricsServiceRequest (JSON): {str(exc)[:200]}") from None
    return _samples(request, max_ts)
