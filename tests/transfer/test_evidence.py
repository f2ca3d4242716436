"""evaluate-transfer over folds and seeds on a small labelled synthetic fleet: every entity held
out once, the same figures when rerun, saved units resumed, the rows the report promises."""

import json

import numpy as np
import pytest
from rich.console import Console

from omnistream.offline.datasets import EntitySeries
from omnistream.transfer.evaluate import Protocol, fold_entities
from omnistream.transfer.evidence import run
from omnistream.transfer.synthetic import fleet
from tests.fleets import SMALL_DCVAE


def labelled_fleet(entities: int = 6, points: int = 900) -> list[EntitySeries]:
    """Periodic entities; each test split carries two labelled level spikes."""
    x, _ = fleet(entities, 2 * points, metrics=4, families=2, seed=3)
    out = []
    for i in range(entities):
        test = x[i, points:].copy()
        labels = np.zeros(points, dtype=bool)
        for start in (200 + 37 * i, 600 - 23 * i):
            test[start:start + 15] += 6 * x[i, :points].std(axis=0)
            labels[start:start + 15] = True
        out.append(EntitySeries(f"e{i}", x[i, :points], test, labels, step_seconds=60.0))
    return out


PROTOCOL = dict(detector="dcvae", config={**SMALL_DCVAE, "epochs": 2}, days=[2, 4], points_per_day=150, folds=3,
                seeds=[0, 1], cluster={"max_period": 100, "nearest": 8})


CPU_KEYS = {"train_seconds", "cpu_per_entity", "refit_seconds"}


def figures_only(tree):
    """Everything but CPU times (which a rerun measures anew)."""
    if isinstance(tree, dict):
        return {k: figures_only(v) for k, v in tree.items() if k not in CPU_KEYS}
    return tree


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    data = labelled_fleet()
    out = tmp_path_factory.mktemp("evidence")
    return data, out, run(data, Protocol(**PROTOCOL), out, "synthetic", 1, Console(quiet=True))


def test_every_entity_is_held_out_once_per_seed():
    folds = fold_entities([f"e{i}" for i in range(7)], 3)
    assert sorted(e for f in folds for e in f) == [f"e{i}" for i in range(7)]
    assert [len(f) for f in folds] == [3, 2, 2]
    with pytest.raises(ValueError):
        fold_entities(["a", "b"], 3)


def test_report_has_every_approach_with_spreads(evidence):
    _, out, result = evidence
    assert result["units"] == 6 and len(result["folds"]) == 3
    rows = result["rows"]
    for key in ["entity_full_train", "zscore", "pca", "seasonal", "random", "flag_all", "scratch:2", "scratch:4",
                "whac:adaptive:2", "whac:full:4", "whac:partial:4", "whac:base:2", "uniform_weights:adaptive:2",
                "no_alignment:adaptive:2", "zscore:2", "pca:4", "seasonal:2"]:
        assert key in rows, key
        assert 0.0 <= rows[key]["units"]["best_f1"]["mean"] <= 1.0
    # seeds change the deep models, not the deterministic baselines
    assert rows["zscore"]["all_entities"]["best_f1"]["std"] == 0.0
    assert rows["flag_all"]["units"]["flagged"]["mean"] == 1.0
    # the spikes are six standard deviations: the full-train model finds them
    assert rows["entity_full_train"]["units"]["best_f1"]["mean"] > rows["random"]["units"]["best_f1"]["mean"]
    init = result["initialisation"]["approaches"]
    assert set(init) >= {"scratch", "whac:adaptive", "whac:full", "whac:partial", "zscore"}
    assert all(v["days"] in (None, 2, 4) for v in init.values())
    assert len(result["targets"]) == 5 and result["base_check"]["base_models"] >= 6
    assert set(result["beta_sweep"]["1.0"]) == {"2", "4"}
    assert (out / "report.md").read_text().count("| whac:adaptive:") == 2
    assert (out / "beta_sweep.png").stat().st_size > 0


def test_rerun_resumes_saved_units_and_gives_the_same_figures(evidence):
    data, out, first = evidence
    unit = out / "units" / "seed1-fold2" / "unit.json"
    saved = json.loads(unit.read_text())
    unit.unlink()  # one unit lost (a crash before it was written): only it runs again
    again = run(data, Protocol(**PROTOCOL), out, "synthetic", 1, Console(quiet=True))
    assert figures_only(json.loads(unit.read_text())["results"]) == figures_only(saved["results"])
    assert figures_only(again["rows"]) == figures_only(first["rows"])


def test_two_runs_are_compared_unit_by_unit(evidence, tmp_path):
    import shutil

    from omnistream.transfer.evidence import compare

    _, out, _ = evidence
    other = tmp_path / "other"
    shutil.copytree(out / "units", other / "units")
    same = compare(out, other)
    assert all(f["max_abs"] == 0 for row in same["rows"].values() for f in row.values())
    assert all(o["same_order"] for o in same["order"].values())
    unit = other / "units" / "seed0-fold0" / "unit.json"
    moved = json.loads(unit.read_text())
    scratch = moved["results"][f"scratch:{PROTOCOL['days'][0]}"]
    entity = next(iter(scratch))
    scratch[entity]["deployed"]["tp"] = 0  # one entity's detections lost on "another machine"
    unit.write_text(json.dumps(moved))
    changed = compare(out, other)["rows"][f"scratch:{PROTOCOL['days'][0]}"]["deployed_f1"]
    assert changed["max_abs"] > 0 and set(compare(out, other)["units"]) == set(same["units"])
