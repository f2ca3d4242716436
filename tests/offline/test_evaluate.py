"""`omnistream evaluate` on two real ASD servers with small budgets: every figure, baselines
from the same run, report, markdown and plots."""

import json

import numpy as np
import pytest

from omnistream.offline.datasets import DataError, EntitySeries, LeftOut, load_asd
from omnistream.offline.evaluate import BASELINES, FailedRun, attempt, run, run_one
from omnistream.offline.fit import Calibration


def test_evaluate_reports_every_figure_with_baselines(tmp_path):
    data = load_asd(["omi-5", "omi-6"])
    configs = {"usad": {"epochs": 2, "window": 5}}
    report = run("asd", data, ["usad"], configs, seeds=2, out_dir=tmp_path, jobs=2)  # in two processes
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["detectors"].keys() == {"usad", *BASELINES}
    usad = saved["detectors"]["usad"]
    assert usad["seeds"] == 2 and saved["detectors"]["zscore"]["seeds"] == 1
    summary = usad["summary"]
    for kind in ("best", "best_pa", "deployed", "deployed_pa"):
        assert 0.0 <= summary[kind]["pooled_f1"]["mean"] <= 1.0
    assert summary["best_pa"]["pooled_f1"]["mean"] >= summary["best"]["pooled_f1"]["mean"]
    assert 0.0 < summary["deployed"]["flagged_share"]["mean"] < 1.0
    # what q = 1e-2 promises, on the calibration split's second half: about 1 %, far from a flood
    assert 0.0 <= saved["detectors"]["zscore"]["summary"]["deployed"]["held_out_alarms"]["mean"] < 0.05
    assert "held-out false alarms (q)" in (tmp_path / "report.md").read_text()
    # pooled counts are the sums of the entities' counts
    seed0 = usad["entities"]["0"]
    tp = sum(e["deployed"]["tp"] for e in seed0.values())
    fp = sum(e["deployed"]["fp"] for e in seed0.values())
    assert seed0["omi-5"]["deployed"]["points"] == len(data[0].test)
    assert tp + fp == sum(e["deployed"]["flagged"] for e in seed0.values())
    flag_all = saved["detectors"]["flag_all"]["summary"]["best"]["pooled_f1"]["mean"]
    rate = np.concatenate([s.labels for s in data]).mean()
    assert np.isclose(flag_all, 2 * rate / (1 + rate))
    assert "usad" in (tmp_path / "report.md").read_text()
    for plot in ("scores.png", "summary.png"):
        assert (tmp_path / plot).stat().st_size > 10_000
    assert report["anomaly_rate"] == saved["anomaly_rate"]


def _series(name, train, test_rows=300, seed=0):
    rng = np.random.default_rng(seed)
    test = rng.normal(size=(test_rows, train.shape[1])).astype(np.float32)
    test[100:110] += 8  # an anomaly to find
    labels = np.zeros(test_rows, np.int8)
    labels[100:110] = 1
    return EntitySeries(name, train.astype(np.float32), test, labels)


def test_an_entity_that_cannot_be_used_is_left_out_and_the_others_go_on(tmp_path):
    rng = np.random.default_rng(1)
    data = [_series("ok-1", rng.normal(size=(600, 3))), _series("ok-2", rng.normal(size=(600, 3)), seed=2),
            _series("short", rng.normal(size=(186, 3))), _series("flat", np.ones((600, 3)))]
    earlier = [LeftOut("unreadable", "test_label.csv must be one column")]
    report = run("mine", data, [], seeds=1, out_dir=tmp_path, left_out=earlier)
    assert report["entities"] == ["ok-1", "ok-2"] and report["points"] == 600
    reasons = {e["entity"]: e["reason"] for e in report["left_out"]}
    assert reasons.keys() == {"unreadable", "short", "flat"}
    assert reasons["short"].startswith("history of 186 points is too short")
    assert "constant" in reasons["flat"]
    assert json.loads((tmp_path / "report.json").read_text())["left_out"] == report["left_out"]
    assert "3 entities left out of every figure" in (tmp_path / "report.md").read_text()
    seed0 = report["detectors"]["zscore"]["entities"]["0"]
    assert seed0.keys() == {"ok-1", "ok-2"}
    with pytest.raises(DataError, match="no entity can be evaluated"):
        run("mine", data[2:], [], seeds=1, out_dir=tmp_path / "none")


def test_a_fit_that_fails_is_returned_with_its_traceback():
    rng = np.random.default_rng(3)
    broken = _series("e", rng.normal(size=(600, 3)))
    broken = EntitySeries("e", broken.train, broken.test[:, :2], broken.labels)  # test has 2 of the 3 metrics
    failed = attempt("pca", 0, broken, {}, Calibration(), 1)
    assert isinstance(failed, FailedRun) and failed.kind == "error" and failed.entity == "e"
    assert "Traceback" in failed.traceback and failed.reason.split(":")[0].endswith("Error")
    short = EntitySeries("s", broken.train[:100], broken.test, broken.labels)
    failed = attempt("pca", 0, short, {}, Calibration(), 1)
    assert failed.kind == "data" and "too short" in failed.reason and failed.traceback == ""


def test_pca_on_one_metric_is_the_z_score_and_says_so():
    rng = np.random.default_rng(4)
    one = _series("u", rng.normal(size=(600, 1)))
    pca, zscore = (run_one(name, 0, one, {}, Calibration(), 1) for name in ("pca", "zscore"))
    assert np.ptp(pca.scores) > 0 and "z-score" in pca.note
    assert np.corrcoef(pca.scores, zscore.scores)[0, 1] > 0.999  # the same ranking
    two = _series("b", rng.normal(size=(600, 2)) @ np.array([[1.0, 0.9], [0.0, 0.4]]))
    residual = run_one("pca", 0, two, {}, Calibration(), 1)
    assert np.ptp(residual.scores) > 0 and residual.note is None  # one direction kept, one left as residual


def test_a_metric_never_observed_in_training_does_not_flood():
    """Training saw nothing of the third metric: it reads as missing, as it did in training,
    instead of its raw value (which made every test point anomalous)."""
    rng = np.random.default_rng(6)
    train = np.c_[rng.normal(size=(600, 2)), np.full(600, np.nan)]
    series = _series("e", train)
    series.test[:, 2] = 50.0  # present in the test split, far from anything
    for name in ("zscore", "pca"):
        r = run_one(name, 0, series, {}, Calibration(), 1)
        assert r.flags.mean() < 0.2, name
