"""Topic creation against the real broker."""

import pytest

from omnistream.stream.config import Settings
from omnistream.stream.topics import ensure_topics, metric_topics

pytestmark = pytest.mark.e2e


def test_created_topics_are_visible_at_once(kafka_bootstrap, topic_prefix):
    settings = Settings(kafka={"bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix})
    created = ensure_topics(settings, extra=("metrics.web-1", "metrics.db-1"))
    assert f"{topic_prefix}metrics.web-1" in created
    # A worker started right after lists the metric topics once to subscribe: none may be missing.
    assert metric_topics(settings) == [f"{topic_prefix}metrics", f"{topic_prefix}metrics.db-1",
                                       f"{topic_prefix}metrics.web-1"]
    assert ensure_topics(settings, extra=("metrics.web-1",)) == []
