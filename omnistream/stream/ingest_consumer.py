"""The first hop, outside Faust: metric and collector topics -> validated, packed points.

Why not a Faust agent: profiled on the end-to-end bench, Faust's consumer spent more of the
process's time on each source record (aiokafka's record objects, the conductor, the stream's
queue and an event per record) than validation and scoring together. This hop holds no table
state, so it runs here as one confluent-kafka consumer and producer in a thread, batch by
batch: ``consume`` a batch (librdkafka fetches without the GIL), validate and pack it
(stream.ingest), produce the points and dead letters, wait until the broker holds them all,
then commit the batch's offsets. At-least-once, as before: a crash between delivery and commit
sends a batch again, and the scoring side drops points it has seen (stream.processor). The
worker runs it in a process of its own (stream.ingest_process).

- Its own consumer group, ``<app_id>-ingest``: every worker process of a deployment joins it,
  so the metric topics are shared among them as the points topic is among Faust's members.
- A pattern subscription (``^<prefix>metrics(\\..+)?$`` and the listed collector topics): a new
  entity's topic is found by librdkafka's metadata refresh every ``kafka.discover_every``.
- Points are keyed by entity with the murmur2 partitioner, Kafka's default and Faust's, so an
  entity's points land on the partition its window state was kept under.
- A failed delivery or an unexpected error ends the process (the worker ends with it and the
  command restarts both; the restart resumes from the last commit), never a silently dead thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from omnistream.stream import telemetry
from omnistream.stream.config import Settings
from omnistream.stream.ingest import Ingest, SourceMessage
from omnistream.stream.logs import RateLimitedLog
from omnistream.stream.shutdown import UNDELIVERED_EXIT, end_process
from omnistream.stream.topics import POINTS, client_config, ingest_group, kafka_error, metric_topic_regex

log = logging.getLogger(__name__)
FAILED_EXIT = 1
# Commit errors that are not marked retriable but pass: the coordinator moving or loading.
_COMMIT_LATER = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                 KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                 KafkaError._WAIT_COORD}


class _GivenUp(Exception):
    """The batch in hand is left uncommitted: the worker is stopping and the broker cannot take it."""


def subscription(settings: Settings) -> list[str]:
    """The topics this hop reads: the metric topics by pattern (librdkafka's regex: a leading
    ``^``), and the collector topics by name."""
    return [metric_topic_regex(settings), *sorted(set(settings.source_topics()) - {settings.topic("metrics")})]


def received(message: Message) -> SourceMessage:
    kind, ms = message.timestamp()
    return SourceMessage(message.key(), message.value(), message.topic(), message.partition(), message.offset(),
                         ms / 1000.0 if kind else None)


class IngestConsumer:
    """Consumes the source topics in batches and forwards their points; one thread."""

    def __init__(self, settings: Settings, router: Ingest):
        k = settings.kafka
        self.settings, self.router = settings, router
        self.points_topic, self.dlq_topic = settings.topic(POINTS), settings.topic("metrics-dlq")
        self.consumer = Consumer({
            **client_config(settings), "group.id": ingest_group(settings), "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": int(k.session_timeout * 1000),
            "heartbeat.interval.ms": int(k.heartbeat_every * 1000),
            "max.poll.interval.ms": int(max(k.rebalance_timeout, 300) * 1000),
            "topic.metadata.refresh.interval.ms": int(k.discover_every * 1000),
        })
        self.producer = Producer({**client_config(settings), "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 10, "partitioner": "murmur2_random"})
        self.assignment: set[tuple[str, int]] = set()  # read by the lag report (a copy, replaced whole)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._waiting = RateLimitedLog(log, every=60.0)

    def start(self) -> None:
        self.consumer.subscribe(subscription(self.settings), on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)
        self._thread.start()

    def request_stop(self) -> None:
        """Stop after the batch in hand (delivered and committed), or give it up uncommitted if
        the broker cannot take it: the next owner of its partitions reads it again."""
        self._stop.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment = self.assignment | {(tp.topic, tp.partition) for tp in partitions}
        log.info("ingest: %d source partitions held of %d topics", len(self.assignment),
                 len({topic for topic, _ in self.assignment}))

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment = self.assignment - {(tp.topic, tp.partition) for tp in partitions}

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._batch()
                except _GivenUp:
                    break
            self.consumer.close()  # leaves the group at once: its partitions go to the others
        except Exception:
            end_process(FAILED_EXIT, log, "the ingest hop failed: stopping the process, whose restart resumes from "
                        "the last commit", exc_info=True)

    def _batch(self) -> None:
        w = self.settings.window
        messages = self.consumer.consume(w.batch_max, timeout=w.batch_within)
        self.producer.poll(0)
        if not messages:
            return
        usable = []
        for message in messages:
            error = message.error()
            if error is None:
                usable.append(received(message))
            elif error.fatal():  # the client cannot go on: the restart makes a new one
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                telemetry.BROKER_ERRORS.labels("ingest_consume").inc()
                self._waiting.warning("ingest: %s", error)
        routed = self.router.route(usable)
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for dead in routed.dead:
            self._produce(self.dlq_topic, dead.key, dead.value, on_delivery, dead.headers)
        for key, value in routed.points:
            self._produce(self.points_topic, key, value, on_delivery)
        while self.producer.flush(1.0):  # every message held by the broker before the offsets move
            self._waiting.warning("ingest: %d points messages wait for the broker", len(self.producer))
            if self._stop.is_set():
                raise _GivenUp  # not committed: the next owner of these partitions reads them again
        self._waiting.reset("ingest: the broker takes points again")
        if failures:
            end_process(UNDELIVERED_EXIT, log, "%d of %d points messages were not delivered (%s): stopping the "
                        "process, whose restart redoes the batch from the last commit", len(failures),
                        len(routed.points) + len(routed.dead), failures[0])
        self._commit()

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, on_delivery: Callable,
                 headers: list | None = None) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # the client's queue is full: let it send some first
                if self._stop.is_set():
                    raise _GivenUp from None
                self.producer.poll(0.5)

    def _commit(self) -> None:
        """Commit the positions after the batch. A commit refused because the partitions moved
        (a rebalance) is left: their new owner reads the batch again, which the windows drop as
        seen. One the broker cannot take now is tried again."""
        while not self._stop.is_set():
            try:
                self.consumer.commit(asynchronous=False)
                return
            except KafkaException as exc:
                error = kafka_error(exc)
                code = error.code() if error is not None else None
                if code in (KafkaError._NO_OFFSET, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                            KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST):
                    log.info("ingest: batch offsets not committed (%s): the partitions' next owner reads it again",
                             exc)
                    return
                if error is not None and (error.fatal() or not error.retriable()) and code not in _COMMIT_LATER:
                    raise
                telemetry.BROKER_ERRORS.labels("ingest_commit").inc()
                self._waiting.warning("ingest: cannot commit offsets (%s); retrying", exc)
                time.sleep(0.5)
