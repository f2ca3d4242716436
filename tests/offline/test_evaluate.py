"""`omnistream evaluate` on one real ASD server with a tiny budget: report, plot, export."""

import json

from omnistream.detectors.dcvae import DCVAEConfig
from omnistream.detectors.base import load
from omnistream.offline.evaluate import run


def test_evaluate_writes_report_plot_and_models(tmp_path):
    config = DCVAEConfig(window=16, channels=8, dilations=[1, 2, 4], epochs=1)
    report = run("asd", ["omi-5"], config, train_stride=8, out_dir=tmp_path / "r", export_dir=tmp_path / "m")
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["mean"] == report["mean"]
    scores = saved["entities"]["omi-5"]["mean_sq"]
    for key in ("best_f1", "best_f1_pa", "val_f1", "val_f1_pa"):
        assert 0.0 <= scores[key]["f1"] <= 1.0
    assert scores["best_f1_pa"]["f1"] >= scores["best_f1"]["f1"]  # point-adjust only ever adds true positives
    assert (tmp_path / "r" / "scores.png").stat().st_size > 10_000
    _, info = load(tmp_path / "m" / "omi-5.pt")
    assert info.entity == "omi-5" and info.window == 16 and len(info.training["alpha"]) == 19
