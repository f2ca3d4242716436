"""Reading a compacted topic whole, in a daemon thread: every worker instance reads all of it
from the beginning (what it says may concern any partition's entities), so a restarted worker
learns the latest value of every key again, and a new message is applied within a poll.
``caught_up`` is set once every partition has been read to its end: what the topic said when
the worker started is known, so that scoring need not begin without it."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

log = logging.getLogger(__name__)


class CompactedTopicReader(threading.Thread):
    """Calls ``apply(key, value)`` for every message of ``topic``, oldest first, then for each
    new one; an error in ``apply`` is the subclass's to report (it must not end the thread)."""

    def __init__(self, name: str, topic: str, client_config: dict[str, object]):
        super().__init__(name=name, daemon=True)
        self.topic = topic
        self.caught_up = threading.Event()
        self.consumer = Consumer({**client_config, "group.id": f"omnistream-{name}-{time.time_ns()}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "enable.partition.eof": True})

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        raise NotImplementedError

    def run(self) -> None:
        try:
            partitions = self._assign_all()
            at_end: set[int] = set()
            while True:  # a daemon thread: it ends with the process
                msg = self.consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("%s topic: %s", self.topic, msg.error())
                    elif not self.caught_up.is_set():
                        at_end.add(msg.partition())
                        if at_end >= partitions:
                            self.caught_up.set()
                    continue
                self.apply(msg.key(), msg.value())
        except Exception:  # the worker goes on without this topic's news
            log.exception("reader of %s stopped", self.topic)
        finally:
            self.consumer.close()

    def _assign_all(self) -> set[int]:
        while True:
            meta = self.consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is not None and meta.error is None and meta.partitions:
                self.consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])
                return set(meta.partitions)
            time.sleep(1.0)
