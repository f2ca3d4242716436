"""prometheus-kafka-adapter's JSON (Prometheus remote write into Kafka): one sample per
message, ``{"labels": {"__name__", ...}, "name", "value", "timestamp"}``, the value a string
(``"NaN"`` also for staleness markers, ``"+Inf"``) and the timestamp RFC 3339.

Remote write carries no metric types, so which series are counters is the mapping's rule
(by default the names Prometheus gives counters: ``*_total``, ``*_count``, ``*_sum``,
``*_bucket``).
"""

from __future__ import annotations

from datetime import datetime

import orjson

from omnistream.ingest.mapping import SourceSettings
from omnistream.ingest.samples import Decoded, FormatError, Sample


def decode(value: bytes, source: SourceSettings, max_ts: float, kafka_ts: float | None = None) -> Decoded:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FormatError("a prometheus-kafka-adapter record is a JSON object")
    labels = data.get("labels")
    if not isinstance(labels, dict):
        raise FormatError("'labels' must be an object of strings")
    name = labels.get("__name__") or data.get("name")
    if not isinstance(name, str) or not name:
        raise FormatError("no metric name ('__name__' label or 'name')")
    raw, stamp = data.get("value"), data.get("timestamp")
    try:
        number = float(raw)  # "NaN", "+Inf", "-Inf" and numbers, as Go's FormatFloat writes them
    except (TypeError, ValueError):
        raise FormatError(f"value {str(raw)[:40]!r} is not a number") from None
    try:
        ts = datetime.fromisoformat(stamp).timestamp()
    except (TypeError, ValueError):
        raise FormatError(f"timestamp {str(stamp)[:40]!r} is not RFC 3339") from None
    out = Decoded()
    out.add(Sample(name, {str(k): str(v) for k, v in labels.items() if k != "__name__"}, ts, number), max_ts)
    return out
