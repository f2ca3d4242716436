"""An entity's first points, read back from its metric topic for the transfer service.

Reads with a plain assigned consumer (no group), up to the partitions' current ends, and
keeps what it has read per entity, so that a request waiting for more data only reads
what arrived since its last look. An entity of a collector topic (``sources``) has no
points on its topic, only samples: those are read from the worker's internal points topic,
where ingest put them keyed by entity, and assembled as the worker assembles them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from omnistream.ingest.assemble import Assembler
from omnistream.ingest.mapping import SourceSettings
from omnistream.stream.records import RecordError, parse_metric_record


class TopicMissing(LookupError):
    """The topic a request names does not exist on the broker."""


@dataclass
class Collected:
    rows: dict[float, dict[str, float | None]] = field(default_factory=dict)  # ts -> metrics (last wins)
    positions: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read
    assembler: Assembler | None = None  # a collector entity's open steps

    def ordered(self, from_ts: float) -> list[tuple[float, dict[str, float | None]]]:
        return [(ts, self.rows[ts]) for ts in sorted(self.rows) if ts >= from_ts]


class Gatherer:
    def __init__(self, client_config: dict[str, object], prefix: str = "", timeout: float = 5.0,
                 collectors: dict[str, SourceSettings] | None = None, points_topic: str = ""):
        self.consumer = Consumer({**client_config, "group.id": "omnistream-transfer-gather",
                                  "enable.auto.commit": False, "enable.partition.eof": True})
        self.prefix, self.timeout = prefix, timeout
        self.collectors, self.points_topic = collectors or {}, points_topic
        self.cache: dict[tuple[str, str], Collected] = {}

    def points(self, topic: str, entity: str, from_ts: float) -> list[tuple[float, dict[str, float | None]]]:
        """Every point of ``entity`` in ``topic`` with ts >= from_ts, in time order."""
        collected = self.cache.setdefault((topic, entity), Collected())
        if topic in self.collectors:
            if collected.assembler is None:
                collected.assembler = Assembler({topic: self.collectors[topic]}, lambda key: None)
            self._read(self.points_topic, collected, lambda msg: self._assembled(msg, topic, entity, collected))
        else:
            self._read(topic, collected, lambda msg: self._record(msg, topic, entity, collected))
        return collected.ordered(from_ts)

    def _record(self, msg, topic: str, entity: str, collected: Collected) -> None:
        try:
            record = parse_metric_record(msg.value(), msg.key(), topic, self.prefix)
        except RecordError:
            return  # the worker dead-letters it; nothing to learn from here
        if record.entity == entity:
            collected.rows[record.ts] = record.metrics

    @staticmethod
    def _assembled(msg, topic: str, entity: str, collected: Collected) -> None:
        if msg.key() != entity.encode():
            return
        data = orjson.loads(msg.value())
        if data.get("source") == topic and "samples" in data:
            got = collected.assembler.add(entity, topic, msg.partition(), msg.offset(), data["samples"])
            collected.rows.update(got.points)

    def _read(self, topic: str, collected: Collected, take) -> None:
        """Hand every message of ``topic`` not read yet to ``take``."""
        meta = self.consumer.list_topics(topic, timeout=self.timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise TopicMissing(f"topic {topic!r} does not exist")
        ends = {}
        for p in meta.partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=self.timeout)
            if high > collected.positions.get(p, 0):
                ends[p] = high
        if ends:
            self.consumer.assign([TopicPartition(topic, p, collected.positions.get(p, 0)) for p in ends])
            while ends:
                msg = self.consumer.poll(self.timeout)
                if msg is None:
                    raise KafkaException(f"no data from {topic!r} within {self.timeout:.0f} s")
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        ends.pop(msg.partition(), None)
                        continue
                    raise KafkaException(msg.error())
                p = msg.partition()
                collected.positions[p] = msg.offset() + 1
                if collected.positions[p] >= ends.get(p, 0):
                    ends.pop(p, None)
                take(msg)
            self.consumer.unassign()

    def forget(self, topic: str, entity: str) -> None:
        self.cache.pop((topic, entity), None)

    def close(self) -> None:
        self.consumer.close()
