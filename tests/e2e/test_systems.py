"""A system on the real broker: its topology published, a system model in the model folder,
Nezha Online Boutique's second day replayed: system events arrive on `anomalies` with the system
named and its entities ranked, entity points of all ten services are aligned into system rows,
and a topology change (a call added, a service gone) reaches the running worker's model. And a
system with a topology and only per-entity models (two ASD servers): its incidents rank them."""

from __future__ import annotations

import time

import orjson
import pytest
from streams import consume, start_worker
from test_pipeline import asd_records

from omnistream.cli.replay import replay
from omnistream.offline.fit_system import export_system, fit_system
from omnistream.offline.systems import load_nezha_system
from omnistream.stream.fleet import FLEET_MODEL
from omnistream.stream.records import AnomalyEvent, Topology
from omnistream.topology.graph import publish

pytestmark = pytest.mark.e2e
ROWS = 240  # of the second day: 11 of its faults
BASE_TS = 1661256000.0  # 2022-08-23 12:00 UTC, a minute boundary


@pytest.fixture(scope="module")
def system_models(tmp_path_factory):
    system = load_nezha_system(0)
    fit = fit_system("stdrift", system, dict(window=12, dim=16, epochs=8, centre=True))
    folder = tmp_path_factory.mktemp("system-models")
    export_system(fit, system, folder)
    return folder, system


def _records(system, rows):
    """Entity records as the services' exporters send them: each a few seconds off the minute."""
    out = []
    for k in range(rows):
        for i, node in enumerate(system.nodes):
            values = {m: (None if v != v else float(v)) for m, v in zip(system.metrics, system.test[k, i].tolist())}
            out.append({"entity": node, "ts": BASE_TS + 60 * k + i, "metrics": values})
    return out


def _system_events(messages):
    return [AnomalyEvent.model_validate_json(m.value()) for m in messages
            if orjson.loads(m.value()).get("related_entities")]


def test_system_events_rank_the_entities_and_follow_the_topology(kafka_bootstrap, topic_prefix, system_models,
                                                                 tmp_path):
    folder, system = system_models
    config = {"bootstrap.servers": kafka_bootstrap}
    worker = start_worker(kafka_bootstrap, topic_prefix, folder, tmp_path).start()
    try:
        publish(system.topology, config, f"{topic_prefix}topology")
        replay(_records(system, ROWS), config, topic_prefix)
        messages = consume(kafka_bootstrap, f"{topic_prefix}anomalies",
                           lambda m: len([e for e in _system_events(m) if e.state == "open"]) >= 3, 240)
        events = _system_events(messages)
        opened = [e for e in events if e.state == "open"]
        assert len(opened) >= 3, worker.tail()
        for event in events:
            assert event.system == event.entity == "online-boutique"
            assert sorted(r.entity for r in event.related_entities) == sorted(system.nodes)
            scores = [r.calibrated_score for r in event.related_entities]
            assert scores == sorted(scores, reverse=True)
        faults = [f for f in system.faults if f.end <= ROWS]
        inside = [e for e in opened for f in faults if BASE_TS + 60 * f.start <= e.ts < BASE_TS + 60 * f.end]
        assert inside, "a system incident should open within one of the faults"
        kept = [n for n in system.topology.nodes if n != "emailservice"]
        changed = Topology(**{**system.topology.model_dump(), "version": "v2", "nodes": kept,
                              "edges": [e for e in system.topology.edges if set(e[:2]) <= set(kept)]
                              + [("adservice", "cartservice", 1.0)],
                              "attributes": {n: a for n, a in system.topology.attributes.items() if n in kept}})
        publish(changed, config, f"{topic_prefix}topology")
        more = _records(system, ROWS + 60)[len(system.nodes) * ROWS:]
        for k in range(0, len(more), len(system.nodes) * 5):  # a few rows at a time, until the worker says so
            replay(more[k:k + len(system.nodes) * 5], config, topic_prefix)
            if b"follows topology version v2" in worker.log_path.read_bytes():
                break
            time.sleep(2.0)
        log = worker.log_path.read_text()
        assert "system online-boutique follows topology version v2" in log, worker.tail()
        assert "gone from the topology (no calls, still scored): emailservice" in log
    finally:
        worker.stop()


def test_a_fleet_of_entity_models_gets_ranked_system_incidents(kafka_bootstrap, topic_prefix, trained_models,
                                                              asd_series, tmp_path):
    config = {"bootstrap.servers": kafka_bootstrap}
    topology = Topology(system="asd-pair", version="1", valid_from=0, ts=0, nodes=["omi-1", "omi-2"],
                        edges=[("omi-1", "omi-2", 1.0)])
    publish(topology, config, f"{topic_prefix}topology")
    worker = start_worker(kafka_bootstrap, topic_prefix, trained_models[0], tmp_path).start()
    try:
        deadline = time.monotonic() + 120  # the worker has read the topology before the records come
        while b"topology of asd-pair" not in worker.log_path.read_bytes() and time.monotonic() < deadline:
            time.sleep(1.0)
        replay(asd_records(asd_series), config, topic_prefix)
        messages = consume(kafka_bootstrap, f"{topic_prefix}anomalies",
                           lambda m: any(e.state == "open" for e in _system_events(m)), 180)
        events = _system_events(messages)
        assert any(e.state == "open" for e in events), worker.tail()
        for event in events:
            assert event.entity == event.system == "asd-pair" and event.model.name == FLEET_MODEL
            scores = [r.calibrated_score for r in event.related_entities]
            assert scores == sorted(scores, reverse=True) and {r.entity for r in event.related_entities} <= {
                "omi-1", "omi-2"}
        opened = [e for e in events if e.state == "open"]
        assert all(e.related_entities[0].calibrated_score >= 1 and e.related_entities[0].top_metrics for e in opened)
        entity_events = [AnomalyEvent.model_validate_json(m.value()) for m in messages
                         if orjson.loads(m.value())["entity"] != "asd-pair"]
        assert entity_events and all(e.system == "asd-pair" for e in entity_events)  # linked to the system's
    finally:
        worker.stop()
