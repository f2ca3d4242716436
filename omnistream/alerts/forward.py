"""`omnistream alerts`: anomaly events from the ``anomalies`` topic to an alert target.

At-least-once and restart-safe: a batch's offsets are committed only once its alerts were
accepted, so a crash re-sends them (idempotent at Alertmanager, which identifies an alert by
its labels). At start, the events of the last ``lookback`` hours up to the committed offsets
are read again without sending, to know which incidents are still open and keep re-sending
them; without that, a restart would let Alertmanager resolve them after ``endsAt``.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

from omnistream.alerts.incidents import Incidents
from omnistream.alerts.targets import AlertTarget
from omnistream.stream.config import Settings
from omnistream.stream.records import AnomalyEvent
from omnistream.stream.topics import SETTLING, client_config, kafka_error

log = logging.getLogger(__name__)


class Forwarder:
    def __init__(self, settings: Settings, target: AlertTarget, resend_seconds: float = 60.0,
                 plot_url: str = "", lookback_hours: float = 24.0, start: str = "latest"):
        self.settings, self.target = settings, target
        self.resend, self.plot_url, self.lookback = resend_seconds, plot_url, lookback_hours
        self.topic = settings.topic("anomalies")
        self.group = f"{settings.app_id}-alerts"
        self.consumer = Consumer({**client_config(settings), "group.id": self.group, "enable.auto.commit": False,
                                  "auto.offset.reset": start})
        self.incidents = Incidents()
        self.sent = 0

    def rebuild(self, timeout: float = 30.0) -> int:
        """Apply the recent events up to the group's committed offsets, sending nothing; the
        incidents found open."""
        reader = Consumer({**client_config(self.settings), "group.id": f"{self.group}-rebuild",
                           "enable.auto.commit": False})
        try:
            meta = reader.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
            if meta is None or meta.error is not None:
                return 0  # no event yet
            partitions = meta.partitions
            committed = self._committed([TopicPartition(self.topic, p) for p in partitions], timeout)
            since = int((time.time() - self.lookback * 3600) * 1000)
            starts = reader.offsets_for_times([TopicPartition(self.topic, p, since) for p in partitions], timeout)
            todo = {tp.partition: (tp.offset, committed[tp.partition]) for tp in starts
                    if 0 <= tp.offset < committed.get(tp.partition, -1)}
            if todo:
                reader.assign([TopicPartition(self.topic, p, first) for p, (first, _) in todo.items()])
            deadline = time.monotonic() + 4 * timeout
            while todo and time.monotonic() < deadline:
                for msg in reader.consume(500, 1.0):
                    if msg.error():
                        continue
                    p = msg.partition()
                    if p in todo and msg.offset() < todo[p][1]:
                        self._event(msg)
                    if p in todo and msg.offset() >= todo[p][1] - 1:
                        del todo[p]
        finally:
            reader.close()
        return len(self.incidents.open)

    def _committed(self, partitions: list[TopicPartition], timeout: float) -> dict[int, int]:
        """The group's committed offsets; a broker still settling (just started: the group's
        coordinator loading) is asked again until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return {tp.partition: tp.offset for tp in self.consumer.committed(partitions, timeout=timeout)}
            except KafkaException as exc:
                error = kafka_error(exc)
                if error is None or error.code() not in SETTLING or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _event(self, msg):
        try:
            return self.incidents.apply(AnomalyEvent.model_validate_json(msg.value() or b""))
        except ValidationError as exc:
            log.error("skipping a malformed event at %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(),
                      exc.errors()[0]["msg"])
            return None

    def _deliver(self, incidents: list, stop: threading.Event) -> bool:
        """Send until accepted (or told to stop): False when stopped first."""
        wait = 1.0
        while not stop.is_set():
            now = time.time()
            try:
                self.target.send([i.alert(now, self.resend, self.plot_url) for i in incidents])
            except OSError as exc:
                log.warning("alert target %s refused or unreachable (%s); retrying in %.0f s", self.target.url, exc,
                            wait)
                stop.wait(wait)
                wait = min(wait * 2, 30.0)
                continue
            for incident in incidents:
                incident.sent_at = now
            self.sent += len(incidents)
            return True
        return False

    def run(self, stop: threading.Event) -> None:
        open_now = self.rebuild()
        log.info("forwarding %s to %s (%d incidents open, re-sent every %.0f s)", self.topic, self.target.url,
                 open_now, self.resend)
        self.consumer.subscribe([self.topic])
        try:
            while not stop.is_set():
                messages = [m for m in self.consumer.consume(500, 0.5) if not m.error()]
                changed = {}
                for msg in messages:
                    incident = self._event(msg)
                    if incident is not None:
                        changed[id(incident)] = incident
                due = [i for i in self.incidents.due(time.time(), self.resend) if id(i) not in changed]
                if not self._deliver([*changed.values(), *due], stop):
                    break
                if messages:
                    try:
                        self.consumer.commit(asynchronous=False)
                    except KafkaException as exc:  # re-sent after a restart: idempotent
                        log.warning("commit failed (%s); the alerts may be sent again", exc)
        finally:
            self.consumer.close()
