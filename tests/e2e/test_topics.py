"""Topic creation against the real broker."""

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from omnistream.stream.config import Settings
from omnistream.stream.topics import (POINTS, BrokerProbe, commit_start_offsets, ensure_topics, ingest_group,
                                      metric_topics, topic_differences)

pytestmark = pytest.mark.e2e


def test_created_topics_are_visible_at_once(kafka_bootstrap, topic_prefix):
    settings = Settings(kafka={"bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix})
    created = ensure_topics(settings, extra=("metrics.web-1", "metrics.db-1"))
    assert f"{topic_prefix}metrics.web-1" in created
    # A worker started right after lists the metric topics once to subscribe: none may be missing.
    assert metric_topics(settings) == [f"{topic_prefix}metrics", f"{topic_prefix}metrics.db-1",
                                       f"{topic_prefix}metrics.web-1"]
    assert ensure_topics(settings, extra=("metrics.web-1",)) == []


def _committed(bootstrap: str, group: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return [tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(8)], 10)]
    finally:
        consumer.close()


def test_a_new_group_starts_from_explicitly_committed_earliest_offsets(kafka_bootstrap, topic_prefix):
    settings = Settings(app_id=f"app-{topic_prefix}start", kafka={"bootstrap": kafka_bootstrap,
                                                                   "topic_prefix": topic_prefix})
    ensure_topics(settings, extra=("metrics.web-1",))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for _ in range(5):
        producer.produce(f"{topic_prefix}metrics.web-1", value=b"{}", key=b"web-1")
    producer.flush(30)
    # every partition of the two internal points topics (the worker's group) and of metrics and
    # metrics.web-1 (the ingest group): 4 topics x 8 partitions
    assert commit_start_offsets(settings) == 4 * settings.kafka.partitions
    # the earliest offset, not the end: nothing skipped
    assert _committed(kafka_bootstrap, ingest_group(settings), f"{topic_prefix}metrics.web-1") == [0] * 8
    assert _committed(kafka_bootstrap, settings.app_id, settings.topic(POINTS)) == [0] * 8
    assert commit_start_offsets(settings) == 0  # committed offsets are left alone


def test_the_ingest_group_starts_where_the_workers_group_read_the_metric_topics(kafka_bootstrap, topic_prefix):
    """A deployment whose workers read the metric topics in their own group before the ingest
    hop had one: the ingest group goes on from those offsets instead of reading history again."""
    settings = Settings(app_id=f"app-{topic_prefix}carried", kafka={"bootstrap": kafka_bootstrap,
                                                                     "topic_prefix": topic_prefix})
    topic = f"{topic_prefix}metrics.web-2"
    ensure_topics(settings, extra=("metrics.web-2",))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for _ in range(5):
        producer.produce(topic, value=b"{}", key=b"web-2", partition=3)
    producer.flush(30)
    earlier = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": settings.app_id})
    try:
        earlier.commit(offsets=[TopicPartition(topic, 3, 4)], asynchronous=False)
    finally:
        earlier.close()
    commit_start_offsets(settings)
    assert _committed(kafka_bootstrap, ingest_group(settings), topic) == [0, 0, 0, 4, 0, 0, 0, 0]


def _configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    return {r.name: {k: e.value for k, e in f.result(30).items()} for r, f in admin.describe_configs(resources).items()}


def test_created_topics_carry_compaction_retention_and_min_insync_replicas(kafka_bootstrap, topic_prefix):
    settings = Settings(kafka={"bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix, "retention_hours": 12,
                               "min_insync_replicas": 1})
    ensure_topics(settings)
    configs = _configs(kafka_bootstrap, [f"{topic_prefix}{n}" for n in ("models", "anomalies", "omnistream-points")])
    assert configs[f"{topic_prefix}models"]["cleanup.policy"] == "compact"
    for name in ("anomalies", "omnistream-points"):
        got = configs[f"{topic_prefix}{name}"]
        assert (got["cleanup.policy"], got["retention.ms"], got["min.insync.replicas"]) == ("delete", "43200000", "1")
    assert topic_differences(settings) == []


def test_existing_topics_that_differ_are_named_with_what_differs(kafka_bootstrap, topic_prefix):
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    made = admin.create_topics([NewTopic(f"{topic_prefix}models", 8, 1, config={"cleanup.policy": "delete"}),
                                NewTopic(f"{topic_prefix}omnistream-points", 3, 1)])
    for future in made.values():
        future.result(30)
    settings = Settings(kafka={"bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix})
    ensure_topics(settings)
    lines = topic_differences(settings)
    assert f"{topic_prefix}models: cleanup.policy = delete, omnistream wants compact" in lines
    assert any(line.startswith(f"{topic_prefix}omnistream-points: 3 partitions") for line in lines)
    assert len(lines) == 2, lines  # the broker's default retention is a week, as omnistream's: no line



def test_the_probe_reads_committed_and_end_offsets_with_the_earliest_for_a_partition_never_committed(
        kafka_bootstrap, topic_prefix):
    settings = Settings(kafka={"bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix})
    ensure_topics(settings)
    topic = settings.topic("metrics")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(12):
        producer.produce(topic, value=b"{}", partition=i % 3)
    producer.flush(30)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_records([TopicPartition(topic, 2, 1)])[TopicPartition(topic, 2, 1)].result(30)  # earliest 1
    group = f"probe-{topic_prefix}"
    committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    committer.close()
    probe = BrokerProbe({"bootstrap.servers": kafka_bootstrap}, topic)
    partitions = [(topic, 0), (topic, 1), (topic, 2)]
    assert probe.offsets(group, partitions) == ({(topic, 0): 3, (topic, 1): 0, (topic, 2): 1},
                                                {(topic, 0): 4, (topic, 1): 4, (topic, 2): 4})
    assert probe.committed(f"{group}-other", [(topic, 2)]) == {(topic, 2): 1}
