"""Replay recorded or labelled data into metric topics, and record topics to files.

Sources: a JSON-lines file of metric records (``omnistream record`` writes them), or a
dataset split (ASD/SMD) whose rows get timestamps ``start + i * step``. Entities are
interleaved in time order. ``speed`` is data seconds per wall second (0 = as fast as the
broker takes them).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from omnistream.offline.datasets import ASD_STEP_SECONDS, SMD_STEP_SECONDS, metric_names, load_dataset

STEPS = {"asd": ASD_STEP_SECONDS, "smd": SMD_STEP_SECONDS}  # anything else (nezha, a folder): 1 minute
DEFAULT_STEP_SECONDS = 60


def dataset_records(dataset: str, split: str = "test", entities: list[str] | None = None,
                    start_ts: float = 1_700_000_000.0, limit: int | None = None) -> Iterator[dict]:
    """Records of a dataset split, entities interleaved by timestamp."""
    series = load_dataset(dataset, entities)
    step = STEPS.get(dataset, DEFAULT_STEP_SECONDS)

    def one(s) -> Iterator[tuple[float, str, dict]]:
        values = getattr(s, split)[:limit]
        names = metric_names(values.shape[1])
        for i, row in enumerate(values.tolist()):
            yield start_ts + i * step, s.entity, dict(zip(names, row))

    for ts, entity, metrics in heapq.merge(*(one(s) for s in series), key=lambda r: (r[0], r[1])):
        yield {"entity": entity, "ts": ts, "metrics": metrics}


def file_records(path: Path) -> Iterator[dict | bytes]:
    """Records of a JSON-lines file; lines that are not JSON are passed on as raw bytes."""
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                yield line


def replay(records: Iterable[dict | bytes], producer_config: dict[str, object], prefix: str = "",
           per_entity_topics: bool = True, speed: float = 0.0, progress=None) -> int:
    """Produce records; returns how many were delivered. Raises if any delivery failed."""
    producer = Producer({**producer_config, "linger.ms": 20, "compression.type": "lz4",
                         "enable.idempotence": True, "acks": "all"})
    failures: list[str] = []
    sent = 0
    first_data_ts, first_wall = None, time.monotonic()

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    for record in records:
        if isinstance(record, bytes):
            topic, key, value = f"{prefix}metrics", None, record
        else:
            entity = record.get("entity")
            topic = f"{prefix}metrics.{entity}" if per_entity_topics and entity else f"{prefix}metrics"
            key = entity.encode() if isinstance(entity, str) else None
            value = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
            ts = record.get("ts")
            if speed > 0 and isinstance(ts, (int, float)):
                first_data_ts = ts if first_data_ts is None else first_data_ts
                wait = first_wall + (ts - first_data_ts) / speed - time.monotonic()
                if wait > 0:
                    producer.poll(0)
                    time.sleep(wait)
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        sent += 1
        if progress is not None:
            progress(1)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"replay: {remaining} undelivered, {len(failures)} failed; first error: "
                           f"{failures[0] if failures else 'timeout'}")
    return sent


def record_topic(topic: str, out: Path, consumer_config: dict[str, object], idle_seconds: float = 5.0,
                 limit: int | None = None) -> int:
    """Copy a topic from its beginning to a JSON-lines file until it is idle for ``idle_seconds``."""
    consumer = Consumer({**consumer_config, "group.id": f"omnistream-record-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaException(f"topic {topic!r} not found")
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    written, idle_since = 0, time.monotonic()
    with open(out, "wb") as f:
        while time.monotonic() - idle_since < idle_seconds and (limit is None or written < limit):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            f.write(msg.value() + b"\n")
            written += 1
            idle_since = time.monotonic()
    consumer.close()
    return written
