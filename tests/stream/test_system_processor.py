"""The worker's system path without Kafka: entity points of a system in any interleaving, a real
exported system model, system incidents that rank their entities, the call graph following the
topology, and a restart from the changelogged snapshot that changes nothing."""

import numpy as np
import pytest
import torch

from omnistream.offline.fit_system import export_system, fit_system
from omnistream.offline.systems import Fault, SystemSeries
from omnistream.stream.config import Settings
from omnistream.stream.records import Topology
from omnistream.stream.scorer import ModelStore
from omnistream.stream.systems import SystemProcessor, pack_system_points, unpack_system_points
from omnistream.topology.registry import TopologyRegistry

NODES = ["api", "cache", "db"]
TOPOLOGY = Topology(system="shop", version="1", valid_from=0, ts=0, nodes=NODES,
                    edges=[("api", "db", 1.0), ("api", "cache", 1.0)])


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    rng = np.random.default_rng(0)
    t = np.arange(700)
    series = (np.sin(2 * np.pi * t / 30)[:, None, None] + 0.1 * rng.standard_normal((700, 3, 2))).astype(np.float32)
    system = SystemSeries("shop", NODES, ["cpu", "lat"], series[:600], series[600:], np.zeros(100, np.int8),
                          np.zeros((100, 3), np.int8), TOPOLOGY, [Fault(0, 1, "db", "")])
    folder = tmp_path_factory.mktemp("system-models")
    export_system(fit_system("stdrift", system, dict(window=8, dim=8, epochs=5)), system, folder)
    return folder, series


def points(series, start, stop, jitter=True):
    """Entity points (entity, ts, metrics), rows a minute apart, entities a few seconds apart."""
    out = []
    for k in range(start, stop):
        for i, node in enumerate(NODES):
            out.append((node, 60.0 * (1000 + k) + (2 * i if jitter else 0),
                        {"cpu": float(series[k, i, 0]), "lat": float(series[k, i, 1])}))
    return out


def processor(folder, restore=lambda system: None):
    settings = Settings()
    store = ModelStore(folder, kind="system")
    store.refresh()
    registry = TopologyRegistry()
    registry.apply(TOPOLOGY)
    return SystemProcessor(settings, store, registry, restore, clock=lambda: 0.0), registry


def run(proc, pts, batch=37):
    """Feed points packed as the score agent packs them, in batches; all outcomes' events."""
    events, snapshots = [], {}
    for i in range(0, len(pts), batch):
        values = [(v, 0) for v in pack_system_points("shop", pts[i:i + batch])]
        out = proc.process(unpack_system_points(values))
        events += out.anomalies
        snapshots.update(out.snapshots)
    return events, snapshots


def test_a_system_incident_names_its_system_and_ranks_the_faulty_entity_first(model_folder):
    folder, series = model_folder
    series = series.copy()
    series[650:654, 2] += 8.0  # db misbehaves
    proc, _ = processor(folder)
    assert proc.members() == {"api": ["shop"], "cache": ["shop"], "db": ["shop"]}
    pts = points(series, 600, 700)
    # each entity's points whole, one entity after the other: the worst skew between partitions
    events, _ = run(proc, sorted(pts, key=lambda p: (p[0], p[1])))
    opened = [e for e in events if e.state == "open"]
    assert opened and all(e.system == "shop" and e.entity == "shop" for e in events)
    first = next(e for e in opened if 60.0 * 1650 <= e.ts <= 60.0 * 1654)
    assert [r.entity for r in first.related_entities][0] == "db"
    assert first.related_entities[0].calibrated_score > 1 and first.related_entities[0].top_metrics


def test_a_restart_from_the_snapshot_gives_the_same_events(model_folder):
    folder, series = model_folder
    series = series.copy()
    series[640:644, 0] += 8.0
    series[680:684, 1] -= 8.0
    whole, _ = run(processor(folder)[0], points(series, 600, 700))
    first_half, snapshots = run(processor(folder)[0], points(series, 600, 660))
    blobs = {system: blob for system, (_, blob) in snapshots.items()}
    second_half, _ = run(processor(folder, lambda system: blobs.get(system))[0], points(series, 660, 700))
    assert [e.event_id for e in first_half + second_half] == [e.event_id for e in whole] and whole


def test_the_call_graph_follows_the_topology(model_folder):
    folder, series = model_folder
    proc, registry = processor(folder)
    run(proc, points(series, 600, 620))
    graph = proc.models.get("shop").module.net.links
    before = graph.clone()
    registry.apply(Topology(system="shop", version="2", valid_from=0, ts=0, nodes=["api", "db", "queue"],
                            edges=[("api", "db", 1.0), ("db", "queue", 1.0)]))  # cache's call gone, queue new
    run(proc, points(series, 620, 630))
    assert not torch.equal(before, graph)
    assert graph[0, 1] == 0 and graph[0, 2] > 0  # api-cache unlinked, api-db linked
