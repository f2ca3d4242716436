"""`omnistream plot`: an incident (or any span) of one entity as a PNG, from what the bus holds:
its points from its metric topic, scored again by its model file as the worker scores them
(the worker's processor, from the first point), and the incident's event from `anomalies`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, KafkaError, TopicPartition

from omnistream.offline.incident_plot import plot_incident
from omnistream.stream.config import Settings
from omnistream.stream.points import Point
from omnistream.stream.processor import Processor
from omnistream.stream.records import AnomalyEvent
from omnistream.stream.scorer import ModelStore
from omnistream.stream.topics import POINTS, client_config
from omnistream.transfer.gather import Gatherer

MARGIN_POINTS = 60  # points shown before and after an incident, at least


@dataclass
class Figure:
    entity: str
    path: Path
    span: tuple[float, float]
    incidents: list[tuple[float, float]] = field(default_factory=list)
    highlight: list[str] = field(default_factory=list)


def topic_events(settings: Settings, timeout: float = 10.0) -> list[AnomalyEvent]:
    """Every event on the anomalies topic, in offset order per partition."""
    topic = settings.topic("anomalies")
    consumer = Consumer({**client_config(settings), "group.id": "omnistream-plot", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        left, out = set(meta.partitions), []
        while left:
            msg = consumer.poll(timeout)
            if msg is None:
                break
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    left.discard(msg.partition())
                continue
            out.append(AnomalyEvent.model_validate_json(msg.value()))
        return out
    finally:
        consumer.close()


def incident_spans(events: list[AnomalyEvent], last_ts: float) -> list[tuple[float, float, AnomalyEvent]]:
    """(open ts, end ts, opening event) of each incident in ``events`` of one entity."""
    spans, opened = [], None
    for e in sorted(events, key=lambda e: e.ts):
        if e.state == "open":
            opened = e
        elif e.state in ("resolved", "shift") and opened is not None:
            spans.append((opened.ts, e.ts, opened))
            opened = None
    if opened is not None:
        spans.append((opened.ts, last_ts, opened))
    return spans


def plot_entity(settings: Settings, entity: str | None, out: Path, event_id: str | None = None,
                start: float | None = None, end: float | None = None, topic: str | None = None) -> Figure:
    published = topic_events(settings) if event_id else []
    chosen = next((e for e in published if e.event_id == event_id), None) if event_id else None
    if event_id and chosen is None:
        raise LookupError(f"no event {event_id} on {settings.topic('anomalies')}")
    entity = chosen.entity if chosen else entity
    if not entity:
        raise ValueError("give an entity or --event-id")
    collectors = {t: s for t, s in settings.source_topics().items() if s.format != "omnistream"}
    gatherer = Gatherer(client_config(settings), settings.kafka.topic_prefix, collectors=collectors,
                        points_topic=settings.topic(POINTS))
    try:
        topic = topic or _metric_topic(gatherer, settings, entity)
        rows = gatherer.points(topic, entity, 0.0)
    finally:
        gatherer.close()
    if not rows:
        raise LookupError(f"no points of {entity} on {topic}")
    store = ModelStore(settings.model_dir)
    store.refresh()
    outcome = Processor(settings, store).process([Point(entity, ts, metrics, topic, 0) for ts, metrics in rows])
    scores = {r.ts: r for r in outcome.scores if r.entity == entity}
    if not scores:
        raise LookupError(f"{entity}: no model in {settings.model_dir} scored its points")
    spans = incident_spans([e for e in outcome.anomalies if e.entity == entity], rows[-1][0])
    step = float(np.median(np.diff([ts for ts, _ in rows]))) if len(rows) > 1 else 60.0
    focus = chosen or (spans[-1][2] if spans else None)
    if start is None or end is None:
        around = next(((a, b) for a, b, e in spans if focus is not None and a <= focus.ts <= b), None) \
            or (rows[0][0], rows[-1][0])
        margin = max(MARGIN_POINTS * step, 0.5 * (around[1] - around[0]))
        start = around[0] - margin if start is None else start
        end = around[1] + margin if end is None else end
    shown = [(ts, m) for ts, m in rows if start <= ts <= end and ts in scores]
    names = store.models[entity].info.metrics if entity in store.models else sorted(shown[0][1])
    ts = np.array([t for t, _ in shown])
    values = np.array([[np.nan if m.get(n) is None else m[n] for n in names] for _, m in shown], dtype=float)
    highlight = [c.metric for c in focus.top_metrics] if focus is not None else []
    model = store.models[entity].info
    drawn = [(a, b) for a, b, _ in spans if b >= start and a <= end]
    notes = ("related: " + ", ".join(f"{r.entity} ({r.calibrated_score:.2f})" for r in focus.related_entities)
             if focus is not None and focus.related_entities else "")
    plot_incident(ts, values, names, np.array([scores[t].score for t in ts]),
                  np.array([scores[t].threshold for t in ts]), drawn, highlight,
                  f"{entity}: {len(drawn)} incident(s), model {model.name} ({model.strategy})", out, notes)
    return Figure(entity, Path(out), (float(ts[0]), float(ts[-1])), drawn, highlight)


def _metric_topic(gatherer: Gatherer, settings: Settings, entity: str) -> str:
    own = settings.topic(f"metrics.{entity}")
    listed = gatherer.consumer.list_topics(own, timeout=gatherer.timeout).topics.get(own)
    return own if listed is not None and listed.error is None else settings.topic("metrics")
