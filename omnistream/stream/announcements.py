"""The worker's listener on the compacted ``models`` topic (read whole by every instance: a
model may serve an entity on any partition), so a restarted worker learns again which model
each entity was last given, and a new announcement is loaded within a poll interval instead of
at the next folder scan."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from omnistream.stream.compacted import CompactedTopicReader
from omnistream.stream.records import ModelAnnouncement
from omnistream.stream.scorer import ModelStore

log = logging.getLogger(__name__)


class AnnouncementListener(CompactedTopicReader):
    """Applies each announcement to the model store; a bad message is logged and skipped."""

    def __init__(self, topic: str, client_config: dict[str, object], store: ModelStore,
                 on_change: Callable[[str], None] = lambda entity: None):
        super().__init__("models", topic, client_config)
        self.store, self.on_change = store, on_change

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
