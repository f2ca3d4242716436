"""`omnistream evaluate` on two real ASD servers with small budgets: every figure, baselines
from the same run, report, markdown and plots."""

import json

import numpy as np

from omnistream.offline.datasets import load_asd
from omnistream.offline.evaluate import BASELINES, run


def test_evaluate_reports_every_figure_with_baselines(tmp_path):
    data = [s for s in load_asd(["omi-5", "omi-6"])]
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
