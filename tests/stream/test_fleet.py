"""System incidents without a system model: real per-entity models score two ASD servers, their
calibrated scores go to the system path as the score agent sends them, and the system's events
rank the servers that have a score; a restart from the snapshot changes nothing."""

import itertools
import logging

import pytest
from test_processor import interleaved, make_processor

from omnistream.stream.config import Settings
from omnistream.stream.fleet import FLEET_MODEL, fleet_scores
from omnistream.stream.records import Topology
from omnistream.stream.scorer import ModelStore
from omnistream.stream.systems import SystemProcessor, pack_fleet_scores, unpack_system_points
from omnistream.topology.registry import TopologyRegistry

TOPOLOGY = Topology(system="asd", version="1", valid_from=0, ts=0, nodes=["omi-1", "omi-2", "unmonitored-db"],
                    edges=[("omi-1", "unmonitored-db", 1.0), ("omi-2", "unmonitored-db", 1.0)])


@pytest.fixture(scope="module")
def entity_scores(trained_models, asd_series):
    """The score records of both servers, in time order (as batches of interleaved points give them)."""
    folder, _ = trained_models
    outcome = make_processor(folder).process(interleaved(asd_series))
    return sorted(outcome.scores, key=lambda r: (r.ts, r.entity))


def system_processor(tmp_path, restore=lambda system: None, clock=None):
    """``clock``: the wall clock, which goes on across a restart (default: a fresh one)."""
    store = ModelStore(tmp_path, kind="system")  # no system model
    store.refresh()
    registry = TopologyRegistry()
    registry.apply(TOPOLOGY)
    clock = clock or itertools.count(0.0, 1000.0)  # each batch 1000 s on: the silent database stops
    return SystemProcessor(Settings(systems={"step_seconds": 300}), store, registry, restore,
                           clock=lambda: next(clock))


def run(proc, records, batch=50):
    events, snapshots = [], {}
    for i in range(0, len(records), batch):
        values = [(v, 3) for v in pack_fleet_scores("asd", fleet_scores(records[i:i + batch]))]
        out = proc.process(unpack_system_points(values))
        events += out.anomalies
        snapshots.update(out.snapshots)
    return events, snapshots


def test_a_fleet_without_a_system_model_gets_ranked_system_incidents(entity_scores, tmp_path):
    proc = system_processor(tmp_path)
    assert proc.fleets_of("omi-1") == ["asd"] and proc.members() == {}
    events, snapshots = run(proc, entity_scores)
    flagged = {(r.entity, r.ts) for r in entity_scores if r.calibrated_score >= 1}
    opened = [e for e in events if e.state == "open"]
    assert opened and set(snapshots) == {"asd"}
    for event in events:
        assert event.entity == event.system == "asd" and event.model.name == FLEET_MODEL
        assert {r.entity for r in event.related_entities} <= {"omi-1", "omi-2"}  # the database never scores
        scores = [r.calibrated_score for r in event.related_entities]
        assert scores == sorted(scores, reverse=True)
    for event in opened:  # opened by a server above its own threshold, named first with its metrics
        first = event.related_entities[0]
        assert first.calibrated_score >= 1 and first.top_metrics
        assert any((first.entity, ts) in flagged for ts in (event.ts - 100, event.ts + 200, event.ts - 200))
        assert event.top_metrics[0].metric.startswith(f"{first.entity}/")


def test_a_restarted_fleet_system_gives_the_same_events(entity_scores, tmp_path):
    whole, _ = run(system_processor(tmp_path), entity_scores)
    half = len(entity_scores) // 2
    clock = itertools.count(0.0, 1000.0)
    first, snapshots = run(system_processor(tmp_path, clock=clock), entity_scores[:half])
    blobs = {system: blob for system, (_, blob) in snapshots.items()}
    second, _ = run(system_processor(tmp_path, lambda system: blobs.get(system), clock), entity_scores[half:])
    assert [e.event_id for e in first + second] == [e.event_id for e in whole] and whole


def test_a_topology_change_and_a_shared_entity_keep_the_fleet_scored(entity_scores, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    proc = system_processor(tmp_path)
    proc.registry.apply(Topology(system="omi-1-alone", version="1", valid_from=0, ts=0, nodes=["omi-1"]))
    assert proc.fleets_of("omi-1") == ["asd", "omi-1-alone"] and proc.fleets_of("omi-2") == ["asd"]
    half = len(entity_scores) // 2
    alone = [r for r in entity_scores if r.entity == "omi-1"]
    assert run(proc, entity_scores[:half])[0]
    # mid-stream: omi-1 leaves, omi-3 (never heard of) comes
    proc.registry.apply(Topology(system="asd", version="2", valid_from=0, ts=0, nodes=["omi-2", "omi-3"]))
    after, _ = run(proc, [r for r in entity_scores[half:] if r.entity == "omi-2"])
    assert "system asd (per-entity models) follows topology version 2" in caplog.text
    assert all({r.entity for r in e.related_entities} == {"omi-2"} for e in after) and after
    assert all(e.model.version == "2" for e in after)
    values = [(v, 0) for v in pack_fleet_scores("omi-1-alone", fleet_scores(alone))]
    shared = proc.process(unpack_system_points(values)).anomalies
    assert shared and all(e.system == "omi-1-alone" for e in shared)
