"""`omnistream evaluate --system` on a small labelled system: TopoMAD (a real, briefly trained
model) against the per-entity baselines, every figure from one run, and root-cause rankings
that find an obvious fault."""

import json

import numpy as np

from omnistream.offline.evaluate_system import incident_opens, run
from omnistream.offline.systems import Fault, SystemSeries
from omnistream.stream.records import Topology


def small_system(seed=0) -> SystemSeries:
    """Four services, api -> {db, cache}, db -> disk, two metrics each; three faults, each a
    jump in one service's metrics (and a smaller echo in its caller)."""
    rng = np.random.default_rng(seed)
    nodes = ["api", "cache", "db", "disk"]
    t = np.arange(900)
    base = np.sin(2 * np.pi * t / 60)[:, None, None] + 0.2 * rng.standard_normal((900, 4, 2))
    train, test = base[:600].astype(np.float32), base[600:].copy().astype(np.float32)
    faults = [Fault(40, 46, "db", "cpu"), Fault(140, 146, "disk", "network"), Fault(230, 236, "cache", "cpu")]
    node_labels = np.zeros((300, 4), np.int8)
    for f in faults:
        i = nodes.index(f.entity)
        test[f.start:f.end, i] += 4.0
        node_labels[f.start:f.end, i] = 1
    topology = Topology(system="shop", version="1", valid_from=0, ts=0, nodes=nodes,
                        edges=[("api", "db", 1.0), ("api", "cache", 1.0), ("db", "disk", 1.0)])
    return SystemSeries("shop", nodes, ["cpu", "lat"], train, test, node_labels.max(axis=1), node_labels,
                        topology, faults)


def test_incidents_open_after_three_normal_rows():
    flags = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 0], bool)
    assert incident_opens(flags).tolist() == [1, 8]
    assert incident_opens(flags, open_after=2).tolist() == [2]  # the lone flagged row 8 opens nothing


def test_system_evaluation_reports_detection_and_root_cause_against_baselines(tmp_path):
    configs = {"topomad": dict(window=8, hidden=8, epochs=3, batch_size=64)}
    report = run("shop", [small_system()], ["topomad"], configs, seeds=1, out_dir=tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["detectors"].keys() == {"topomad", "zscore", "zscore_centred", "pca", "random", "flag_all"}
    assert saved["detectors"]["topomad"]["system"] and not saved["detectors"]["zscore"]["system"]
    for name in ("topomad", "zscore"):
        summary = report["detectors"][name]["summary"]
        assert summary["detection"]["best"]["f1"]["mean"] > 0.8  # the faults are obvious
        assert summary["onset"]["all"]["ac1"]["mean"] == 1.0 and summary["onset"]["all"]["faults"]["mean"] == 3
        assert 0 < summary["detection"]["deployed"]["flagged_share"]["mean"] < 0.5
        assert summary["end_to_end"]["all"]["covered"]["mean"] > 0
    assert report["baro"]["all"]["ac1"] == 1.0
    assert report["detectors"]["random"]["summary"]["onset"]["all"]["ac1"]["mean"] < 1.0
    assert "deployed" not in report["detectors"]["random"]["summary"]["detection"]
    text = (tmp_path / "report.md").read_text()
    assert "BARO" in text and "| topomad (system) |" in text and "cpu (2)" in text


def test_an_entity_dataset_is_one_system_of_its_entities_without_a_call_graph():
    from omnistream.offline.systems import load_system_dataset
    from omnistream.offline.datasets import load_asd

    (system,) = load_system_dataset("asd")
    entities = load_asd()
    assert system.nodes == [e.entity for e in entities] and system.topology.edges == []
    rows = min(len(e.train) for e in entities)
    assert system.train.shape == (rows, len(entities), 19) and system.test.shape == (4320, len(entities), 19)
    for i, e in enumerate(entities):  # aligned at the split: each entity's newest train rows, then its test rows
        np.testing.assert_array_equal(system.train[:, i], e.train[len(e.train) - rows:])
        np.testing.assert_array_equal(system.test[:, i], e.test[:4320])
    assert system.labels.max() == 1 and system.faults
    for f in system.faults:  # a fault: a run of rows where its entity alone is labelled
        i = system.nodes.index(f.entity)
        assert system.node_labels[f.start:f.end, i].all() and system.node_labels[f.start:f.end].sum() == f.end - f.start
