"""The internal points topic: validated points re-keyed by entity, packed many to a message,
and the mapped samples of the collector formats (ingest), likewise, to be assembled into
points where the entity's windows are (ingest.assemble).

Ingest groups a batch's points by entity (and source topic) and sends them together, so the
internal hop costs one Kafka message per entity and batch rather than one per record; the
per-message overhead of the producer, the consumer and Faust is what bounds a worker's rate.
Order within an entity is kept: its points travel in order in one message, or in messages
sent in order to the same partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from omnistream.ingest.mapping import Mapped


class Point(NamedTuple):
    """One validated record, as carried on the internal points topic (a named tuple: a worker
    makes one per record, and a frozen dataclass costs several times as much to build)."""

    entity: str
    ts: float
    metrics: dict[str, float | None]
    source: str
    partition: int
    received: float = 0.0  # Kafka timestamp of the oldest source record it came with (0: unknown)


# Points per message: about 1 kB each as JSON, so a message stays far below Kafka's 1 MB limit.
POINTS_PER_MESSAGE = 200
SAMPLES_PER_MESSAGE = 2000  # about 80 bytes each


def pack_points(entity: str, source: str, points: list[tuple[float, dict[str, float | None]]],
                received: float = 0.0) -> Iterator[bytes]:
    """Messages carrying ``points`` ((ts, metrics) in order) of one entity from one topic;
    ``received``: the Kafka timestamp of the oldest record among them."""
    for i in range(0, len(points), POINTS_PER_MESSAGE):
        yield orjson.dumps({"entity": entity, "source": source, "points": points[i:i + POINTS_PER_MESSAGE],
                            "received": received})


@dataclass(frozen=True)
class Samples:
    """One message of mapped samples of one entity (ingest.assemble.Packed each)."""

    entity: str
    system: str | None
    samples: list[list]
    source: str
    partition: int
    offset: int
    received: float = 0.0


def pack_samples(entity: str, system: str | None, source: str, samples: list[Mapped],
                 received: float = 0.0) -> Iterator[bytes]:
    """Messages carrying the mapped ``samples`` of one entity from one topic."""
    packed = [[s.metric, s.ts, s.value, "c" if s.kind == "counter" else "g", s.start, s.mean] for s in samples]
    for i in range(0, len(packed), SAMPLES_PER_MESSAGE):
        yield orjson.dumps({"entity": entity, "system": system, "source": source,
                            "samples": packed[i:i + SAMPLES_PER_MESSAGE], "received": received})


def unpack_points(values: Iterable[tuple[bytes, int, int]]) -> tuple[list[Point], list[Samples]]:
    """Points and sample messages of (value, partition, offset) of the points topic, in order."""
    points, samples = [], []
    for value, partition, offset in values:
        data = orjson.loads(value)
        entity, source, received = data["entity"], data["source"], data.get("received", 0.0)
        if "samples" in data:
            samples.append(Samples(entity, data["system"], data["samples"], source, partition, offset, received))
        else:
            points.extend(Point(entity, ts, metrics, source, partition, received) for ts, metrics in data["points"])
    return points, samples
