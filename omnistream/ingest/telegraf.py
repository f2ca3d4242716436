"""Telegraf's Kafka output, both serializers: JSON (``{"name","tags","fields","timestamp"}``,
or its batch form ``{"metrics": [...]}``) and Influx line protocol (one point per line).

Each numeric field becomes one sample named by the source's ``name_template``
(``{measurement}_{field}`` by default, as Telegraf's own Prometheus output names it); string
fields are not metrics and are skipped; booleans are 0/1.
Line protocol is parsed by ``line-protocol-parser`` (InfluxDB's escaping rules for commas,
spaces, ``=`` and quotes); the JSON form needs no parser beyond orjson.
"""

from __future__ import annotations

import math

import orjson
from line_protocol_parser import LineFormatError, parse_line

from omnistream.ingest.mapping import SourceSettings
from omnistream.ingest.samples import Decoded, FormatError, Sample

UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _numeric(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None  # a string field: not a metric


def _add_metric(out: Decoded, template: str, measurement: str, tags: dict, fields: dict, ts: float,
                max_ts: float) -> None:
    labels = {str(k): str(v) for k, v in tags.items()}
    for name, value in fields.items():
        number = _numeric(value)
        if number is not None:
            out.add(Sample(template.format(measurement=measurement, field=name), labels, ts, number), max_ts)


def decode_json(value: bytes, source: SourceSettings, max_ts: float, kafka_ts: float | None = None) -> Decoded:
    """One message of Telegraf's JSON serializer (its ``json_timestamp_units``: the source's
    ``timestamp_unit``)."""
    unit = source.timestamp_unit
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"not JSON: {exc}") from None
    metrics = data.get("metrics") if isinstance(data, dict) and "metrics" in data else [data]
    if not isinstance(metrics, list):
        raise FormatError("'metrics' of a batch must be a list")
    out = Decoded()
    for i, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            out.errors.append(f"metric {i}: not an object")
            continue
        name, tags, fields, ts = (metric.get(k) for k in ("name", "tags", "fields", "timestamp"))
        if not isinstance(name, str) or not isinstance(fields, dict) or not isinstance(tags or {}, dict):
            out.errors.append(f"metric {i}: needs a string 'name', an object 'fields' and optionally 'tags'")
            continue
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            out.errors.append(f"metric {i} ({name}): 'timestamp' must be a number in {unit}")
            continue
        _add_metric(out, source.name_template, name, tags or {}, fields, ts * UNIT_SECONDS[unit], max_ts)
    return out


def decode_line(value: bytes, source: SourceSettings, max_ts: float, kafka_ts: float | None = None) -> Decoded:
    """Influx line protocol, one point per line (its precision: the source's ``timestamp_unit``,
    ns by default); a line without a timestamp takes the Kafka record's."""
    unit = source.timestamp_unit
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"line protocol is not UTF-8: {exc}") from None
    out = Decoded()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            point = parse_line(line)
        except LineFormatError as exc:
            out.errors.append(f"line {number}: {exc} ({line[:80]!r})")
            continue
        if point is None:  # a comment
            continue
        if point["time"] is None and kafka_ts is None:
            out.errors.append(f"line {number}: no timestamp, and the record has none")
            continue
        ts = kafka_ts if point["time"] is None else point["time"] * UNIT_SECONDS[unit]
        _add_metric(out, source.name_template, point["measurement"], point["tags"], point["fields"], ts, max_ts)
    if not out.samples and not out.errors:
        raise FormatError("no line protocol point in the record")
    return out
