"""Topic creation against the real broker."""

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from omnistream.stream.config import Settings
from omnistream.stream.topics import commit_start_offsets, ensure_topics, metric_topics

pytestmark = pytest.mark.e2e


def test_created_topics_are_visible_at_once(kafka_bootstrap, topic_prefix):
    settings = Settings(kafka={"bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix})
    created = ensure_topics(settings, extra=("metrics.web-1", "metrics.db-1"))
    assert f"{topic_prefix}metrics.web-1" in created
    # A worker started right after lists the metric topics once to subscribe: none may be missing.
    assert metric_topics(settings) == [f"{topic_prefix}metrics", f"{topic_prefix}metrics.db-1",
                                       f"{topic_prefix}metrics.web-1"]
    assert ensure_topics(settings, extra=("metrics.web-1",)) == []


def test_a_new_group_starts_from_explicitly_committed_earliest_offsets(kafka_bootstrap, topic_prefix):
    settings = Settings(app_id=f"app-{topic_prefix}start", kafka={"bootstrap": kafka_bootstrap,
                                                                   "topic_prefix": topic_prefix})
    ensure_topics(settings, extra=("metrics.web-1",))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for _ in range(5):
        producer.produce(f"{topic_prefix}metrics.web-1", value=b"{}", key=b"web-1")
    producer.flush(30)
    # every partition of metrics, metrics.web-1 and the two internal points topics: 4 topics x 8 partitions
    assert commit_start_offsets(settings) == 4 * settings.kafka.partitions
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": settings.app_id})
    try:
        committed = consumer.committed([TopicPartition(f"{topic_prefix}metrics.web-1", p) for p in range(8)], 10)
    finally:
        consumer.close()
    assert all(tp.offset == 0 for tp in committed)  # the earliest offset, not the end: nothing skipped
    assert commit_start_offsets(settings) == 0  # committed offsets are left alone
