"""The worker's listener on the compacted ``models`` topic: every instance reads all of it
from the beginning (a model may serve an entity on any partition), so a restarted worker
learns again which model each entity was last given, and a new announcement is loaded within
a poll interval instead of at the next folder scan."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from omnistream.stream.records import ModelAnnouncement
from omnistream.stream.scorer import ModelStore

log = logging.getLogger(__name__)


class AnnouncementListener(threading.Thread):
    """Applies each announcement to the model store; a bad message is logged and skipped."""

    def __init__(self, topic: str, client_config: dict[str, object], store: ModelStore,
                 on_change: Callable[[str], None] = lambda entity: None):
        super().__init__(name="model-announcements", daemon=True)
        self.topic, self.store, self.on_change = topic, store, on_change
        self.consumer = Consumer({**client_config, "group.id": f"omnistream-models-{time.time_ns()}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})

    def run(self) -> None:
        try:
            self._assign_all()
            while True:  # a daemon thread: it ends with the process
                msg = self.consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("models topic: %s", msg.error())
                    continue
                self.apply(msg.key(), msg.value())
        except Exception:  # the worker goes on with its folder scans
            log.exception("model announcement listener stopped")
        finally:
            self.consumer.close()

    def _assign_all(self) -> None:
        while True:
            meta = self.consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is not None and meta.error is None and meta.partitions:
                self.consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])
                return
            time.sleep(1.0)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return  # a tombstone: nothing to load
        try:
            ann = ModelAnnouncement.model_validate_json(value)
        except ValidationError as exc:
            log.error("skipping a malformed model announcement: %s", exc.errors()[0]["msg"])
            return
        entity = ann.entity or (key.decode("utf-8", "replace") if key else None)
        if not entity:
            log.error("skipping a model announcement without an entity (%s)", ann.uri)
            return
        if self.store.announce(entity, ann.uri, ann.sha256):
            self.on_change(entity)
