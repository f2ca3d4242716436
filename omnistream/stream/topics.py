"""Topic names (with the configured prefix) and their creation on the broker."""

from __future__ import annotations

import logging
import re
import time

from confluent_kafka.admin import AdminClient, NewTopic

from omnistream.stream.config import Settings

log = logging.getLogger(__name__)

POINTS = "omnistream-points"  # internal: validated points re-keyed by entity
OUTPUTS = ("anomalies", "scores", "transfer-requests", "metrics-dlq")
COMPACTED = ("models", "topology", "transfer-status")


def client_config(settings: Settings) -> dict[str, str]:
    """confluent-kafka settings: bootstrap plus the security pass-through."""
    return {"bootstrap.servers": settings.kafka.bootstrap, **settings.kafka.security}


def metric_topic_pattern(settings: Settings) -> re.Pattern[str]:
    """``<prefix>metrics`` and every ``<prefix>metrics.<entity>``."""
    return re.compile(rf"^{re.escape(settings.kafka.topic_prefix)}metrics(\..+)?$")


def metric_topics(settings: Settings, timeout: float = 10.0) -> list[str]:
    """The metric topics that exist on the broker now."""
    pattern = metric_topic_pattern(settings)
    topics = AdminClient(client_config(settings)).list_topics(timeout=timeout).topics
    return sorted(name for name in topics if pattern.match(name))


class BrokerProbe:
    """Asks the broker for one topic's metadata: cheap, and it fails when the broker is away.
    One client for the worker's life; its own connection errors go to a logger (not stderr)."""

    def __init__(self, client: dict[str, str], topic: str):
        self.topic = topic
        self.admin = AdminClient({**client, "logger": logging.getLogger("omnistream.broker")})

    def check(self, timeout: float) -> None:
        """Raise KafkaException when the broker does not answer within ``timeout`` seconds."""
        self.admin.list_topics(topic=self.topic, timeout=timeout)


def ensure_topics(settings: Settings, extra: tuple[str, ...] = (), timeout: float = 15.0) -> list[str]:
    """Create the topics omnistream reads and writes if they are missing; return those created."""
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout).topics)  # raises KafkaException when unreachable
    k = settings.kafka
    wanted = {settings.topic(name): {} for name in ("metrics", POINTS, *OUTPUTS, *extra)}
    wanted.update({settings.topic(name): {"cleanup.policy": "compact"} for name in COMPACTED})
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


def _await_metadata(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Wait until new topics show in the broker's metadata (a second or two after creation),
    so that a worker started right after `ensure_topics` subscribes to them."""
    deadline = time.monotonic() + timeout
    while not set(names) <= set(admin.list_topics(timeout=timeout).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics created but not yet in the broker's metadata: {', '.join(sorted(names))}")
        time.sleep(0.2)
