"""What the ingest hop does with a batch of source messages, without Kafka: validate (the
native format) or decode and map (the collectors' formats), re-key by entity for the internal
points topic, and set aside what is refused for the dead-letter topic with its reason."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from omnistream.ingest.decode import decode_message
from omnistream.ingest.mapping import Mapped, Mapping
from omnistream.ingest.samples import FormatError
from omnistream.stream import telemetry
from omnistream.stream.config import Settings
from omnistream.stream.points import pack_points, pack_samples
from omnistream.stream.records import RecordError, parse_metric_record

DLQ_COPY_BYTES = 65_536  # the dead-letter copy of a record (or key) is cut to this: it must fit the broker's limit
ERRORS_SHOWN = 5  # refused samples named in a dead letter's error header (the rest counted)


@dataclass(slots=True)
class SourceMessage:
    """A consumed source message (``timestamp``: its Kafka timestamp in seconds, or None)."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float | None


@dataclass
class DeadLetter:
    """A copy of a refused message for the dead-letter topic, its headers saying why."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class Routed:
    points: list[tuple[bytes, bytes]] = field(default_factory=list)  # (entity key, packed value)
    dead: list[DeadLetter] = field(default_factory=list)


class Ingest:
    """Routes batches of source messages; one per worker (it holds the collectors' mappings)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.collectors = {t: Mapping(s) for t, s in settings.source_topics().items() if s.format != "omnistream"}
        self.listed = set(settings.source_topics())  # named in full: no prefix to strip for the entity
        self.shared = settings.topic("metrics")

    def route(self, messages: Iterable[SourceMessage]) -> Routed:
        messages = list(messages)
        out = Routed()
        valid: dict[tuple[str, str], list] = defaultdict(list)  # (entity, topic) -> [(ts, metrics)]
        mapped: dict[tuple[str, str | None, str], list[Mapped]] = defaultdict(list)
        received = min((m.timestamp or 0.0 for m in messages), default=0.0)
        for topic, count in Counter(m.topic for m in messages).items():
            kind = "shared" if topic == self.shared else "collector" if topic in self.collectors else "entity_topic"
            telemetry.RECORDS_IN.labels(kind).inc(count)
        for msg in messages:
            if msg.topic in self.collectors:
                self._collected(msg, mapped, out)
                continue
            try:
                error = self._too_large(msg)
                if error:
                    raise RecordError(error)
                record = parse_metric_record(msg.value, msg.key, msg.topic,
                                             "" if msg.topic in self.listed else self.settings.kafka.topic_prefix,
                                             self.settings.records.max_future_seconds)
            except RecordError as exc:
                out.dead.append(self._dead(msg, str(exc), exc.field))
                continue
            valid[record.entity, msg.topic].append((record.ts, record.metrics))
        for (entity, topic), batch in valid.items():
            out.points.extend((entity.encode(), v) for v in pack_points(entity, topic, batch, received))
        for (entity, system, topic), samples in mapped.items():
            out.points.extend((entity.encode(), v) for v in pack_samples(entity, system, topic, samples, received))
        return out

    def _collected(self, msg: SourceMessage, mapped: dict, out: Routed) -> None:
        """Decode one message of a collector format into ``mapped``; what it refused, into ``out``."""
        try:
            if msg.value is None:
                raise FormatError("empty record (tombstone)")
            error = self._too_large(msg)
            if error:
                out.dead.append(self._dead(msg, error, "size"))
                return
            samples, errors = decode_message(msg.value, self.collectors[msg.topic],
                                             time.time() + self.settings.records.max_future_seconds, msg.timestamp)
        except FormatError as exc:
            out.dead.append(self._dead(msg, f"{self.collectors[msg.topic].source.format}: {exc}", "format"))
            return
        for sample in samples:
            mapped[sample.entity, sample.system, msg.topic].append(sample)
        if errors:
            summary = "; ".join(errors[:ERRORS_SHOWN])
            if len(errors) > ERRORS_SHOWN:
                summary += f"; and {len(errors) - ERRORS_SHOWN} more"
            out.dead.append(self._dead(msg, f"{len(errors)} samples refused: {summary}", "samples",
                                       [("samples.used", str(len(samples)).encode())]))

    def _too_large(self, msg: SourceMessage) -> str | None:
        limit = self.settings.records.max_bytes
        if msg.value is not None and len(msg.value) > limit:
            return f"size: {len(msg.value)} bytes, over records.max_bytes ({limit}); the copy here is truncated"
        return None

    @staticmethod
    def _dead(msg: SourceMessage, error: str, reason: str, extra: list | None = None) -> DeadLetter:
        telemetry.RECORDS_DLQ.labels(reason).inc()
        return DeadLetter((msg.key or b"")[:DLQ_COPY_BYTES] or None,
                          msg.value[:DLQ_COPY_BYTES] if msg.value else msg.value, [
            ("error", error.encode()[:1000]), ("source.topic", msg.topic.encode()),
            ("source.partition", str(msg.partition).encode()), ("source.offset", str(msg.offset).encode()),
            ("source.bytes", str(len(msg.value or b"")).encode()), *(extra or [])])
