"""Each collector format decoded and mapped: what the format's own library writes comes back
as the same values, escapes included, and bad input is refused with a clear error while the
rest of its message is kept."""

from __future__ import annotations

import math

import orjson
import pytest
from collectors import influx_lines, otlp_json, otlp_proto, otlp_requests, prometheus_json, telegraf_json
from opentelemetry.proto.metrics.v1 import metrics_pb2

from omnistream.ingest.decode import decode_message
from omnistream.ingest.mapping import Mapping, SourceSettings
from omnistream.ingest.samples import FormatError

MAX_TS = 2e9
TS = 1_700_000_100.0
RECORDS = [{"entity": e, "ts": TS + 300 * i, "metrics": {"cpu": 0.25 + i, "mem": 1e-7 * (i + 1), "disk": -3.5}}
           for i in range(3) for e in ("web-1", "db 2,x=y")]


def decode(fmt: str, value: bytes, **mapping):
    return decode_message(value, Mapping(SourceSettings(topic="t", format=fmt, **mapping)), MAX_TS)


def collected(fmt: str, messages: list[bytes], **mapping) -> dict:
    """{(entity, metric, ts): value} of all messages."""
    out = {}
    for m in messages:
        samples, errors = decode(fmt, m, **mapping)
        assert errors == []
        out.update({(s.entity, s.metric, s.ts): s.value for s in samples})
    return out


def expected(entity_safe: bool = True) -> dict:
    # ' ' and ',' are not in entity names: the mapping makes them '_'.
    return {(r["entity"].replace(" ", "_").replace(",", "_"), m, r["ts"]): v
            for r in RECORDS for m, v in r["metrics"].items()}


@pytest.mark.parametrize("fmt, write, mapping", [
    ("telegraf_json", telegraf_json, {"name_template": "{field}"}),
    ("influx_line", influx_lines, {"name_template": "{field}"}),
    ("prometheus_json", prometheus_json, {"entity": ["instance"]}),
    ("otlp_proto", otlp_proto, {"entity": ["service.name"]}),
    ("otlp_json", otlp_json, {"entity": ["service.name"]}),
])
def test_every_format_gives_back_the_values_it_was_written_with(fmt, write, mapping):
    assert collected(fmt, write(RECORDS), **mapping) == expected()


def test_line_protocol_escapes_of_commas_spaces_equals_and_quotes():
    line = rb'cpu\,total\ x,host=a\ b\,c\=d,region=eu usage=1.5,note="said \"hi\", ok",n=3i,up=true 1700000100000000000'
    samples, errors = decode("influx_line", line, name_labels=["region"])
    assert errors == []
    assert {(s.entity, s.metric, s.value) for s in samples} == {
        ("a_b_c=d", "cpu_total_x_usage.region=eu", 1.5), ("a_b_c=d", "cpu_total_x_n.region=eu", 3.0),
        ("a_b_c=d", "cpu_total_x_up.region=eu", 1.0)}  # the string field is no metric
    assert samples[0].ts == TS


def test_a_bad_line_is_refused_and_the_other_lines_of_the_message_kept():
    value = b"cpu,host=a usage=1 1700000100000000000\ncpu,host=a\\ usage=2 1700000100000000000\n" \
            b"cpu,host=a idle=+Inf 1700000100000000000\ncpu,host=a sys=3 1700000100000000000"
    samples, errors = decode("influx_line", value)
    assert [(s.metric, s.value) for s in samples] == [("cpu_usage", 1.0), ("cpu_sys", 3.0)]
    assert len(errors) == 2 and errors[0].startswith("line 2:") and errors[1].startswith("line 3:")


def test_timestamps_in_the_wrong_unit_are_refused_by_name():
    value = orjson.dumps({"name": "cpu", "tags": {"host": "a"}, "fields": {"usage": 1.0}, "timestamp": TS * 1000})
    samples, errors = decode("telegraf_json", value)
    assert samples == [] and "wrong unit" in errors[0]
    samples, errors = decode("telegraf_json", value, timestamp_unit="ms")
    assert errors == [] and samples[0].ts == TS


def test_a_label_set_without_the_entity_label_is_refused():
    value = prometheus_json(RECORDS[:1], label="pod")[0]
    samples, errors = decode("prometheus_json", value, entity=["instance"])
    assert samples == [] and errors == ["cpu: no entity label (instance) among job, pod"]


def test_prometheus_values_infinite_refused_nan_missing_counters_by_name():
    def sample(name, value):
        return orjson.dumps({"labels": {"__name__": name, "instance": "a"}, "name": name, "value": value,
                             "timestamp": "2023-11-14T22:15:00.5Z"})

    samples, errors = decode("prometheus_json", sample("up", "+Inf"), entity=["instance"])
    assert samples == [] and errors == ["up: value inf is infinite"]
    samples, errors = decode("prometheus_json", sample("up", "NaN"), entity=["instance"])
    assert errors == [] and math.isnan(samples[0].value) and samples[0].ts == TS + 0.5
    samples, _ = decode("prometheus_json", sample("http_requests_total", "12"), entity=["instance"])
    assert samples[0].kind == "counter"
    with pytest.raises(FormatError, match="RFC 3339"):
        decode("prometheus_json", orjson.dumps({"labels": {"__name__": "x"}, "value": "1", "timestamp": 17}))


def test_truncated_protobuf_is_a_format_error():
    # Cut inside a resource. (A cut exactly between two resources reads as a shorter request:
    # protobuf frames no top-level message, so no decoder can tell.)
    value = otlp_proto(RECORDS)[0]
    with pytest.raises(FormatError, match="protobuf"):
        decode("otlp_proto", value[:-3], entity=["service.name"])


def test_an_infinite_otlp_point_is_refused_and_the_rest_of_the_batch_kept():
    request = otlp_requests(RECORDS, per_request=len(RECORDS), extra={"bad": math.inf})[0]
    samples, errors = decode_message(request.SerializeToString(),
                                     Mapping(SourceSettings(topic="t", format="otlp_proto", entity=["service.name"])),
                                     MAX_TS)
    assert errors == ["bad: value inf is infinite"]
    assert {(s.entity, s.metric, s.ts): s.value for s in samples} == expected()


def test_otlp_sums_histograms_and_summaries():
    request = otlp_requests(RECORDS[:1])[0]
    scope = request.resource_metrics[0].scope_metrics[0]
    t0, t1 = int(TS - 60) * 10**9, int(TS) * 10**9
    total = scope.metrics.add(name="requests")
    total.sum.is_monotonic, total.sum.aggregation_temporality = True, metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    total.sum.data_points.add(start_time_unix_nano=t0, time_unix_nano=t1, as_int=120)
    delta = scope.metrics.add(name="bytes")
    delta.sum.is_monotonic, delta.sum.aggregation_temporality = True, metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    delta.sum.data_points.add(start_time_unix_nano=t0, time_unix_nano=t1, as_double=600.0)
    hist = scope.metrics.add(name="latency")
    hist.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    hist.histogram.data_points.add(start_time_unix_nano=t0, time_unix_nano=t1, count=10, sum=2.5,
                                   explicit_bounds=[0.1, 1.0], bucket_counts=[4, 5, 1])
    summary = scope.metrics.add(name="gc")
    point = summary.summary.data_points.add(time_unix_nano=t1, count=3, sum=0.3)
    point.quantile_values.add(quantile=0.5, value=0.1)
    point.quantile_values.add(quantile=0.75, value=0.12)
    source = SourceSettings(topic="t", format="otlp_proto", entity=["service.name"], histogram_buckets=True)
    samples, errors = decode_message(request.SerializeToString(), Mapping(source), MAX_TS)
    got = {s.metric: (s.value, s.kind) for s in samples if s.metric not in RECORDS[0]["metrics"]}
    assert errors == []
    assert got == {"requests": (120.0, "counter"), "bytes": (10.0, "gauge"),
                   "latency_count": (10.0, "counter"), "latency_sum": (2.5, "counter"),
                   "latency_bucket.le=0.1": (4.0, "counter"), "latency_bucket.le=1.0": (9.0, "counter"),
                   "latency_bucket.le=+Inf": (10.0, "counter"), "gc_count": (3.0, "counter"),
                   "gc_sum": (0.3, "counter"), "gc.quantile=0.5": (0.1, "gauge")}  # 0.75 is not kept
    means = {s.metric: s.mean for s in samples if s.mean}
    assert means == {"latency_count": ("latency_mean", "count"), "latency_sum": ("latency_mean", "sum"),
                     "gc_count": ("gc_mean", "count"), "gc_sum": ("gc_mean", "sum")}


def test_include_exclude_and_several_entity_labels():
    value = b"disk,dc=eu,host=a,dev=sda used=1,free=2 1700000100000000000"
    samples, _ = decode("influx_line", value, entity=["dc", "host"], name_labels=["dev"], include=["disk_*"],
                        exclude=["*free*"])
    assert [(s.entity, s.metric) for s in samples] == [("eu/a", "disk_used.dev=sda")]


def test_source_settings_refuse_a_bad_template_and_duplicate_topics():
    from omnistream.stream.config import Settings

    with pytest.raises(ValueError, match="name_template"):
        SourceSettings(topic="t", format="influx_line", name_template="{metric}")
    with pytest.raises(ValueError, match="more than once"):
        Settings(sources=[{"topic": "t", "format": "influx_line"}, {"topic": "t", "format": "otlp_proto"}])
    with pytest.raises(ValueError, match="own metric topics"):
        Settings(sources=[{"topic": "metrics.web-1", "format": "influx_line"}])
