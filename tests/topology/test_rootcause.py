"""Root-cause rankings and their figures, and the labelled systems they are measured on."""

import numpy as np
import pytest

from omnistream.offline.datasets import DataError
from omnistream.offline.systems import Fault, load_nezha_system, load_system_folder
from omnistream.topology.rootcause import accuracy_at, average_at, baro_scores, rank_entities


def test_rank_entities_orders_by_score_with_missing_last():
    ranked = rank_entities(np.array([0.5, np.nan, 2.0, 0.5]), ["b", "x", "a", "a2"])
    assert [name for name, _ in ranked] == ["a", "a2", "b", "x"]


def test_baro_finds_the_metric_that_left_its_range():
    rng = np.random.default_rng(0)
    before = rng.normal(size=(60, 3, 4))
    after = rng.normal(size=(5, 3, 4))
    after[2:, 1, 3] += 12.0  # entity 1, metric 3
    before[:, 2, 0] = 7.0  # flat before: a tiny change after it must not win over entity 1's jump
    after[:, 2, 0] = 7.0 + 1e-3
    scores = baro_scores(before, after)
    assert np.argmax(scores) == 1 and scores[1] > 5
    before[:, 0] = np.nan  # an entity with nothing before its onset scores 0, not NaN
    assert baro_scores(before, after)[0] == 0.0


def test_accuracy_and_average_at_k():
    rankings = [["a", "b", "c"], ["b", "a", "c"], ["c", "b", "a"]]
    causes = ["a", "a", "a"]
    assert accuracy_at(rankings, causes, 1) == pytest.approx(1 / 3)
    assert accuracy_at(rankings, causes, 2) == pytest.approx(2 / 3)
    assert average_at(rankings, causes, 3) == pytest.approx((1 / 3 + 2 / 3 + 1) / 3)


def test_nezha_folds_cover_all_56_faults_on_their_labelled_rows():
    folds = [load_nezha_system(fold) for fold in (0, 1)]
    assert [len(s.faults) for s in folds] == [32, 24]
    for s in folds:
        assert s.train.shape[1:] == s.test.shape[1:] == (10, 19) and len(s.labels) == len(s.test)
        assert all(s.node_labels[f.start:f.end, s.nodes.index(f.entity)].all() for f in s.faults)
        assert sum(f.end - f.start for f in s.faults) == s.node_labels.sum()
        assert len(s.topology.edges) == 14 and set(s.nodes) <= set(s.topology.nodes)
        flat = s.flat()
        assert flat.train.shape == (len(s.train), 190) and flat.metrics[19] == f"{s.nodes[1]}/CpuUsage"
        np.testing.assert_array_equal(flat.test[:, 19:38], s.test[:, 1])
    assert {f.kind for s in folds for f in s.faults} == {"cpu_contention", "cpu_consumed", "network_delay", "return",
                                                         "exception"}


def _system_folder(root, faults_csv=None):
    rng = np.random.default_rng(1)
    for name in ("api", "db", "cache"):
        folder = root / name
        folder.mkdir(parents=True)
        np.savetxt(folder / "train.csv", rng.normal(size=(300, 2)), delimiter=",")
        np.savetxt(folder / "test.csv", rng.normal(size=(100, 2)), delimiter=",")
        labels = np.zeros(100, int)
        if name == "db":
            labels[40:45] = 1
        np.savetxt(folder / "test_label.csv", labels, fmt="%d")
    (root / "topology.csv").write_text("source,target\napi,db\napi,cache\n")
    if faults_csv:
        (root / "faults.csv").write_text(faults_csv)
    return root


def test_a_user_system_folder_with_or_without_faults_csv(tmp_path):
    s = load_system_folder(_system_folder(tmp_path / "a"))
    assert s.nodes == ["api", "cache", "db"] and s.train.shape == (300, 3, 2)
    assert s.faults == [Fault(40, 45, "db", "")] and s.labels.sum() == 5
    s = load_system_folder(_system_folder(tmp_path / "b", "start,end,entity,kind\n40,46,db,cpu\n"))
    assert s.faults == [Fault(40, 46, "db", "cpu")]
    with pytest.raises(DataError, match="line 2: entity must be one of the system's"):
        load_system_folder(_system_folder(tmp_path / "c", "start,end,entity,kind\n40,46,queue,cpu\n"))
    (tmp_path / "a" / "topology.csv").unlink()
    with pytest.raises(DataError, match="needs topology.csv"):
        load_system_folder(tmp_path / "a")
