"""`omnistream plot` on the real broker: an ASD server's points replayed to its topic and its
incidents' events on `anomalies`; the figure shows the incident the event belongs to."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from test_pipeline import asd_records

from omnistream.cli.plot import incident_spans, plot_entity
from omnistream.cli.replay import replay
from omnistream.stream.config import Settings
from omnistream.stream.points import Point
from omnistream.stream.processor import Processor
from omnistream.stream.records import dumps
from omnistream.stream.scorer import ModelStore

pytestmark = pytest.mark.e2e


def test_an_event_s_incident_is_plotted_with_its_top_metrics(kafka_bootstrap, topic_prefix, trained_models,
                                                            asd_series, tmp_path):
    records = [r for r in asd_records(asd_series, 800) if r["entity"] == "omi-2"]
    config = {"bootstrap.servers": kafka_bootstrap}
    assert replay(records, config, topic_prefix) == len(records)
    store = ModelStore(trained_models[0])
    store.refresh()
    events = Processor(Settings(), store).process([Point(r["entity"], r["ts"], r["metrics"], "", 0)
                                                   for r in records]).anomalies
    producer = Producer(config)
    for e in events:
        producer.produce(f"{topic_prefix}anomalies", key=e.entity.encode(), value=dumps(e))
    producer.flush(30)
    spans = incident_spans(events, records[-1]["ts"])
    assert spans, "the model should flag something in the first ASD test points"
    opened_at, ended_at, opening = spans[-1]
    settings = Settings(kafka={"bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
                        model_dir=trained_models[0])
    figure = plot_entity(settings, None, tmp_path / "incident.png", event_id=opening.event_id)
    assert figure.entity == "omi-2" and (opened_at, ended_at) in figure.incidents
    assert figure.highlight == [m.metric for m in opening.top_metrics]
    assert figure.span[0] < opened_at and figure.span[1] >= ended_at
    png = (tmp_path / "incident.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
