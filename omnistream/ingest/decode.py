"""One entry point for every collector format: a message's bytes to mapped samples."""

from __future__ import annotations

from collections.abc import Callable

from omnistream.ingest import otlp, prometheus, telegraf
from omnistream.ingest.mapping import Mapped, Mapping, SourceSettings
from omnistream.ingest.samples import Decoded

Decoder = Callable[[bytes, SourceSettings, float, float | None], Decoded]
DECODERS: dict[str, Decoder] = {
    "telegraf_json": telegraf.decode_json,
    "influx_line": telegraf.decode_line,
    "prometheus_json": prometheus.decode,
    "otlp_proto": otlp.decode_proto,
    "otlp_json": otlp.decode_json,
}


def decode_message(value: bytes, mapping: Mapping, max_ts: float,
                   kafka_ts: float | None = None) -> tuple[list[Mapped], list[str]]:
    """Mapped samples of one message and what was refused in it; raises ``FormatError`` when
    nothing in it can be read."""
    decoded = DECODERS[mapping.source.format](value, mapping.source, max_ts, kafka_ts)
    return mapping.apply(decoded)
