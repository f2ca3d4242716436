"""Topic names (with the configured prefix) and their creation on the broker."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from omnistream.stream.config import Settings

log = logging.getLogger(__name__)

POINTS = "omnistream-points"  # internal: validated points re-keyed by entity
SYSTEM_POINTS = "omnistream-system-points"  # internal: the points of systems' entities, keyed by system
OUTPUTS = ("anomalies", "scores", "transfer-requests", "metrics-dlq")
COMPACTED = ("models", "topology", "transfer-status")
# The broker refused the client's credentials (wrong password or certificate) or their rights.
REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
                      KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                      KafkaError.GROUP_AUTHORIZATION_FAILED})
# A commit from outside refused because the group has live members (they hold the offsets).
LIVE_GROUP = frozenset({KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS})
# The broker is still settling (just started, or topics just created): the group's coordinator
# or a partition's leader is not ready yet. Ask again shortly.
SETTLING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                      KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
                      KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART})


KAFKA_LOG = logging.getLogger("omnistream.kafka")


def client_config(settings: Settings) -> dict[str, object]:
    """confluent-kafka settings: bootstrap plus the security pass-through. The clients log
    through Python logging (filtered and formatted like the rest), not straight to stderr,
    where a retrying client would write hundreds of lines a minute in a broker outage."""
    return {"bootstrap.servers": settings.kafka.bootstrap, **settings.kafka.security, "logger": KAFKA_LOG}


_REGEX_SPECIAL = set(".^$*+?()[]{}|\\")


def metric_topic_regex(settings: Settings) -> str:
    """``<prefix>metrics`` and every ``<prefix>metrics.<entity>``: one regex for Python's ``re``
    (the worker's own checks) and librdkafka's engine (the ingest hop's pattern subscription),
    the prefix's special characters escaped one by one with a backslash, which both read alike."""
    prefix = "".join(f"\\{c}" if c in _REGEX_SPECIAL else c for c in settings.kafka.topic_prefix)
    return f"^{prefix}metrics(\\..+)?$"


def metric_topic_pattern(settings: Settings) -> re.Pattern[str]:
    return re.compile(metric_topic_regex(settings))


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError a client's exception carries, if any."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error if isinstance(error, KafkaError) else None


def refused(exc: BaseException) -> bool:
    """Whether a client error means that the broker refused the credentials, not that it was out of reach."""
    error = kafka_error(exc)
    return error is not None and error.code() in REFUSALS


def _admin(settings: Settings) -> tuple[AdminClient, list[KafkaError]]:
    """An admin client, and the list its error events (failed logins, refused connections) go to."""
    errors: list[KafkaError] = []
    return AdminClient({**client_config(settings), "error_cb": errors.append}), errors


def _list_topics(admin: AdminClient, errors: list[KafkaError], timeout: float) -> set[str]:
    """The broker's topic names. librdkafka only says "transport failure" once ``timeout`` is
    over, whatever the cause: this asks every second and raises the cause it reports instead, at
    once for refused credentials."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return set(admin.list_topics(timeout=min(1.0, max(deadline - time.monotonic(), 0.1))).topics)
        except KafkaException:
            admin.poll(0)  # serves the error events
            refusal = next((e for e in errors if e.code() in REFUSALS), None)
            if refusal is not None:
                raise KafkaException(refusal) from None
            if time.monotonic() >= deadline:
                cause = next((e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN), None)
                if cause is None:
                    raise
                raise KafkaException(cause) from None


def metric_topics(settings: Settings, timeout: float = 10.0) -> list[str]:
    """The metric topics that exist on the broker now."""
    pattern = metric_topic_pattern(settings)
    return sorted(name for name in _list_topics(*_admin(settings), timeout) if pattern.match(name))


OFFSET_LATEST, OFFSET_EARLIEST = -1, -2  # ListOffsets' special timestamps


class BrokerProbe:
    """Asks the broker for one topic's metadata (cheap, and it fails when the broker is away),
    and for groups' committed offsets and partitions' end offsets.

    The offsets are asked through consumer handles (``committed``, ``offsets_for_times``), not
    the admin API: librdkafka's admin offset requests abort the process when they time out as a
    broker goes away or comes back (``rd_kafka_enq_once_del_source_return: Assertion
    eonce->refcnt > 0``, librdkafka issue 4605, open in 2.16), which killed workers in broker
    outages. A consumer handle that never subscribes joins no group.

    Each client is used by one thread at a time: the probe, the progress watch and the gap
    guards call it from executor threads. The health check has a client of its own, so that an
    offsets call waiting out its timeout in an outage cannot hold the check back for longer
    than the outage."""

    def __init__(self, client: dict[str, object], topic: str):
        self.topic, self.client = topic, client
        self._handles: dict[str, Consumer] = {}  # one per group: a consumer handle's group is fixed
        self._lock = threading.Lock()
        self._health_admin = AdminClient(client)
        self._health_lock = threading.Lock()

    def check(self, timeout: float) -> None:
        """Raise KafkaException when the broker does not answer within ``timeout`` seconds."""
        with self._health_lock:
            try:
                self._health_admin.list_topics(topic=self.topic, timeout=timeout)
            finally:
                self._health_admin.poll(0)  # hands the client's queued log lines to Python logging

    def committed(self, group: str, partitions: list[tuple[str, int]],
                  timeout: float = 10.0) -> dict[tuple[str, int], int]:
        """The committed offsets of ``partitions`` for ``group``; a partition the group never
        committed counts as committed at its earliest offset."""
        with self._lock:
            try:
                return self._committed(group, partitions, timeout)
            finally:
                self._handle(group).poll(0)  # hands the handle's queued log lines to Python logging

    def offsets(self, group: str, partitions: list[tuple[str, int]],
                timeout: float = 10.0) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """The committed (as ``committed`` gives them) and end offsets of ``partitions``."""
        with self._lock:
            try:
                return (self._committed(group, partitions, timeout),
                        self._list_offsets(group, partitions, OFFSET_LATEST, timeout))
            finally:
                self._handle(group).poll(0)

    def has_records(self, topic: str, partition: int, start: int, stop: int, timeout: float = 10.0) -> bool:
        """Whether the partition holds a record at an offset in [start, stop): offsets also go
        to transaction markers and compacted-away records, which leave gaps with none."""
        consumer = Consumer({**self.client, "group.id": "omnistream-gap-check", "enable.auto.commit": False,
                             "enable.partition.eof": True, "isolation.level": "read_uncommitted",
                             "auto.offset.reset": "earliest"})
        try:
            consumer.assign([TopicPartition(topic, partition, start)])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        return False
                    raise KafkaException(msg.error())
                return msg.offset() < stop
            raise TimeoutError(f"no answer about {topic}[{partition}] offsets {start}..{stop} within {timeout:.0f} s")
        finally:
            consumer.close()

    def _handle(self, group: str) -> Consumer:
        """The group's consumer handle; end offsets are the high watermarks (read_uncommitted),
        as the admin API gave them."""
        if group not in self._handles:
            self._handles[group] = Consumer({**self.client, "group.id": group, "enable.auto.commit": False,
                                             "isolation.level": "read_uncommitted"})
        return self._handles[group]

    def _committed(self, group: str, partitions: list[tuple[str, int]], timeout: float) -> dict[tuple[str, int], int]:
        asked = self._handle(group).committed([TopicPartition(t, p) for t, p in partitions], timeout=timeout)
        committed = {(tp.topic, tp.partition): tp.offset for tp in _answered(asked) if tp.offset >= 0}
        never = [tp for tp in partitions if tp not in committed]
        if never:
            committed.update(self._list_offsets(group, never, OFFSET_EARLIEST, timeout))
        return committed

    def _list_offsets(self, group: str, partitions: list[tuple[str, int]], which: int,
                      timeout: float) -> dict[tuple[str, int], int]:
        """The earliest or latest offsets: a ListOffsets request's timestamps -2 and -1 mean
        those, and librdkafka sends the given ones as they are, one request per leader."""
        asked = self._handle(group).offsets_for_times([TopicPartition(t, p, which) for t, p in partitions],
                                                      timeout=timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in _answered(asked)}


def _answered(partitions: list[TopicPartition]) -> list[TopicPartition]:
    """``partitions`` as answered; raise the first partition's error, if any."""
    failed = next((tp.error for tp in partitions if tp.error is not None), None)
    if failed is not None:
        raise KafkaException(failed)
    return partitions


def wanted_topics(settings: Settings, extra: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    """Every topic the worker creates if missing, with the configs it needs: compaction for the
    keyed state topics, retention for the rest, and ``min.insync.replicas`` where set."""
    k = settings.kafka
    common = {"min.insync.replicas": str(k.min_insync_replicas)} if k.min_insync_replicas else {}
    delete = {**common, "cleanup.policy": "delete", "retention.ms": str(round(k.retention_hours * 3_600_000))}
    wanted = {settings.topic(name): delete for name in ("metrics", POINTS, SYSTEM_POINTS, *OUTPUTS, *extra)}
    wanted.update({settings.topic(name): {**common, "cleanup.policy": "compact"} for name in COMPACTED})
    return wanted


def ensure_topics(settings: Settings, extra: tuple[str, ...] = (), timeout: float = 15.0) -> list[str]:
    """Create the topics omnistream reads and writes if they are missing; return those created."""
    admin, errors = _admin(settings)
    existing = _list_topics(admin, errors, timeout)  # raises KafkaException when unreachable or refused
    k = settings.kafka
    wanted = wanted_topics(settings, extra)
    wanted.update({name: wanted[settings.topic("metrics")] for name in settings.source_topics()})  # the collectors'
    new = [NewTopic(name, num_partitions=k.partitions, replication_factor=k.replication, config=cfg)
           for name, cfg in wanted.items() if name not in existing]
    created = []
    for name, future in (admin.create_topics(new, operation_timeout=timeout).items() if new else []):
        try:
            future.result(timeout)
            created.append(name)
        except Exception as exc:  # created meanwhile by another worker is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    if created:
        _await_metadata(admin, created, timeout)
        log.info("created topics: %s", ", ".join(sorted(created)))
    return created


def topic_differences(settings: Settings, timeout: float = 15.0) -> list[str]:
    """What the existing topics do not have of what the worker needs (``wanted_topics``), one
    line each: partitions of the internal topics (co-partitioned with the window tables),
    replication, cleanup policy, retention and ``min.insync.replicas``."""
    admin, errors = _admin(settings)
    k = settings.kafka
    metadata = admin.list_topics(timeout=timeout).topics
    wanted = {name: cfg for name, cfg in wanted_topics(settings).items() if name in metadata}
    if not wanted:
        return []
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in sorted(wanted)]
    configs = {r.name: {key: entry.value for key, entry in future.result(timeout).items()}
               for r, future in admin.describe_configs(resources, request_timeout=timeout).items()}
    out = []
    internal = {settings.topic(POINTS), settings.topic(SYSTEM_POINTS)}
    for name, cfg in sorted(wanted.items()):
        partitions = metadata[name].partitions
        if name in internal and len(partitions) != k.partitions:
            out.append(f"{name}: {len(partitions)} partitions, but the window tables have kafka.partitions = "
                       f"{k.partitions} (co-partitioned: recreate the topic or set kafka.partitions)")
        replicas = min((len(p.replicas) for p in partitions.values()), default=0)
        if replicas < k.replication:
            out.append(f"{name}: replication factor {replicas}, kafka.replication asks for {k.replication}")
        for key, value in cfg.items():
            have = configs.get(name, {}).get(key)
            if have != value:
                out.append(f"{name}: {key} = {have}, omnistream wants {value}")
    return out


def ingest_group(settings: Settings) -> str:
    """The consumer group of the ingest hop (stream.ingest_consumer), beside Faust's ``app_id``."""
    return f"{settings.app_id}-ingest"


def commit_start_offsets(settings: Settings, timeout: float = 15.0) -> int:
    """Give every partition a group reads and has never committed an explicit start, committed
    for the group: the points topics for the worker's (Faust's) group, the metric and collector
    topics for the ingest group. Faust resumes a restarted worker from committed offsets, but one
    killed before its first commit, whose window changelog already has entries, would otherwise
    come back consuming nothing. The start is the earliest offset; for the ingest group, the
    offset the worker's group committed where it has one (workers before the ingest hop left
    Faust read the metric topics in that group), so an upgrade does not read history again.
    Only possible while a group has no active member (a first start, or every worker down):
    otherwise the others hold the offsets and this does nothing. A broker still settling
    (coordinator loading, leaders not elected) is waited for. Returns the partitions committed."""
    pattern = metric_topic_pattern(settings)
    internal = {settings.topic(POINTS), settings.topic(SYSTEM_POINTS)}
    sources = set(settings.source_topics())
    return (_commit_group_start(settings, settings.app_id, internal.__contains__, None, timeout)
            + _commit_group_start(settings, ingest_group(settings), lambda name: name in sources or pattern.match(name),
                                  settings.app_id, timeout))


def _commit_group_start(settings: Settings, group: str, read: Callable[[str], object], carried_from: str | None,
                        timeout: float) -> int:
    consumer = Consumer({**client_config(settings), "group.id": group, "enable.auto.commit": False})
    earlier = Consumer({**client_config(settings), "group.id": carried_from, "enable.auto.commit": False}) \
        if carried_from else None
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return _commit_start(consumer, earlier, read, timeout)
            except KafkaException as exc:
                error = kafka_error(exc)
                if error is not None and error.code() in LIVE_GROUP:
                    log.debug("start offsets of %s left to the group's live members: %s", group, exc)
                    return 0
                if error is not None and error.code() in SETTLING and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise
    finally:
        consumer.close()
        if earlier is not None:
            earlier.close()


def _commit_start(consumer: Consumer, earlier: Consumer | None, read: Callable[[str], object], timeout: float) -> int:
    metadata = consumer.list_topics(timeout=timeout).topics
    partitions = [TopicPartition(name, p) for name, topic in metadata.items() if read(name) for p in topic.partitions]
    missing = [tp for tp in consumer.committed(partitions, timeout=timeout) if tp.offset < 0]
    carried = {(tp.topic, tp.partition): tp.offset for tp in earlier.committed(missing, timeout=timeout)
               if tp.offset >= 0} if earlier is not None and missing else {}
    start = [TopicPartition(tp.topic, tp.partition, carried.get((tp.topic, tp.partition))
                            or consumer.get_watermark_offsets(tp, timeout=timeout)[0]) for tp in missing]
    if start:
        consumer.commit(offsets=start, asynchronous=False)
    return len(start)


def _await_metadata(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Wait until new topics show in the broker's metadata (a second or two after creation),
    so that a worker started right after `ensure_topics` subscribes to them."""
    deadline = time.monotonic() + timeout
    while not set(names) <= set(admin.list_topics(timeout=timeout).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics created but not yet in the broker's metadata: {', '.join(sorted(names))}")
        time.sleep(0.2)
