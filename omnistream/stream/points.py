"""The internal points topic: validated points re-keyed by entity, packed many to a message.

Ingest groups a batch's points by entity (and source topic) and sends them together, so the
internal hop costs one Kafka message per entity and batch rather than one per record; the
per-message overhead of the producer, the consumer and Faust is what bounds a worker's rate.
Order within an entity is kept: its points travel in order in one message, or in messages
sent in order to the same partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Point:
    """One validated record, as carried on the internal points topic."""

    entity: str
    ts: float
    metrics: dict[str, float | None]
    source: str
    partition: int


# Points per message: about 1 kB each as JSON, so a message stays far below Kafka's 1 MB limit.
POINTS_PER_MESSAGE = 200


def pack_points(entity: str, source: str, points: list[tuple[float, dict[str, float | None]]]) -> Iterator[bytes]:
    """Messages carrying ``points`` ((ts, metrics) in order) of one entity from one topic."""
    for i in range(0, len(points), POINTS_PER_MESSAGE):
        yield orjson.dumps({"entity": entity, "source": source, "points": points[i:i + POINTS_PER_MESSAGE]})


def unpack_points(values: Iterable[tuple[bytes, int]]) -> list[Point]:
    """Points of messages (value, partition of the points topic), in message order."""
    out = []
    for value, partition in values:
        data = orjson.loads(value)
        entity, source = data["entity"], data["source"]
        out.extend(Point(entity, ts, metrics, source, partition) for ts, metrics in data["points"])
    return out
