"""`omnistream evaluate`: train a detector per entity on its train split, score the test
split, and report best F1 (with and without point-adjust) and validation-threshold F1.

Writes ``report.json`` and ``scores.png`` to the output folder; optionally exports each
trained model to TorchScript so that the same run feeds the stream worker.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from omnistream.offline import metrics
from omnistream.offline.datasets import EntitySeries, asd_metric_names, load_dataset
from omnistream.detectors.dcvae import DCVAE, DCVAEConfig
from omnistream.detectors.base import ModelInfo, export, point_scores, sliding_windows
from omnistream.detectors.reduce import REDUCERS, alpha_thresholds, reduce_scores


def train_entity(series: EntitySeries, config: DCVAEConfig, train_stride: int) -> DCVAE:
    detector = DCVAE(series.train.shape[1], config)
    detector.set_normalisation(series.train)
    detector.fit(sliding_windows(series.train, config.window, train_stride))
    return detector


def export_entity(detector: DCVAE, series: EntitySeries, out_dir: Path, metric_names: list[str]) -> dict:
    """Export the entity's model with its decision thresholds calibrated on train data only."""
    train_z = point_scores(detector, series.train)
    info = ModelInfo(
        name=detector.name, version=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), metrics=metric_names,
        window=detector.window, threshold=float(np.quantile(reduce_scores(train_z), 0.999)),
        entity=series.entity,
        training={"seconds": round(detector.train_seconds, 2), "epochs": len(detector.history["val_loss"]),
                  "alpha": alpha_thresholds(train_z).round(4).tolist(), "score": "mean_sq",
                  "threshold_rule": "0.999 quantile of train scores"},
    )
    path = out_dir / f"{series.entity}.pt"
    parity = sliding_windows(series.test[: detector.window + 31], detector.window)
    sha = export(detector, info, path, parity)
    return {"path": str(path), "sha256": sha}


def evaluate_entity(detector: DCVAE, series: EntitySeries) -> tuple[dict, dict[str, np.ndarray]]:
    per_metric = point_scores(detector, series.test, history=series.train)
    result, scores = {}, {}
    for how in REDUCERS:
        s = reduce_scores(per_metric, how)
        scores[how] = s
        result[how] = {
            "best_f1": metrics.best_f1(s, series.labels).as_dict(),
            "best_f1_pa": metrics.best_f1(s, series.labels, point_adjust=True).as_dict(),
            "val_f1": metrics.validation_threshold_f1(s, series.labels).as_dict(),
            "val_f1_pa": metrics.validation_threshold_f1(s, series.labels, point_adjust=True).as_dict(),
        }
    return result, scores


def _summary(per_entity: dict[str, dict]) -> dict:
    summary = {}
    for how in REDUCERS:
        summary[how] = {key: round(float(np.mean([e[how][key]["f1"] for e in per_entity.values()])), 4)
                        for key in ("best_f1", "best_f1_pa", "val_f1", "val_f1_pa")}
    return summary


def plot(scores: dict[str, dict[str, np.ndarray]], data: dict[str, EntitySeries], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 1.6 * len(names) + 0.5), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        s = scores[name]["mean_sq"]
        ax.plot(s, lw=0.6, color="tab:blue")
        for start, end in metrics.anomaly_segments(data[name].labels):
            ax.axvspan(start, end, color="tab:red", alpha=0.25, lw=0)
        ax.set_yscale("log")
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_title("DC-VAE test scores (mean z^2, log scale); labelled anomalies shaded")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(dataset: str = "asd", entities: list[str] | None = None, config: DCVAEConfig | None = None,
        train_stride: int = 2, out_dir: Path = Path("reports/evaluate"), export_dir: Path | None = None,
        console: Console | None = None) -> dict:
    console = console or Console()
    config = config or DCVAEConfig()
    data = {s.entity: s for s in load_dataset(dataset, entities)}
    out_dir.mkdir(parents=True, exist_ok=True)
    per_entity, scores, exported = {}, {}, {}
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"training {dataset} models", total=len(data))
        for name, series in data.items():
            progress.update(task, description=f"training {name}")
            detector = train_entity(series, config, train_stride)
            per_entity[name], scores[name] = evaluate_entity(detector, series)
            per_entity[name]["train_seconds"] = round(detector.train_seconds, 2)
            progress.console.print(f"{name}: best F1 {per_entity[name]['mean_sq']['best_f1']['f1']:.3f}, "
                                   f"with point-adjust {per_entity[name]['mean_sq']['best_f1_pa']['f1']:.3f} "
                                   f"(trained in {detector.train_seconds:.0f} s)")
            if export_dir is not None:
                names = asd_metric_names(series.train.shape[1])
                exported[name] = export_entity(detector, series, export_dir, names)
            progress.advance(task)
    report = {
        "dataset": dataset, "detector": "dcvae", "config": asdict(config), "train_stride": train_stride,
        "entities": per_entity, "mean": _summary(per_entity), "exported": exported,
        "seconds": round(time.perf_counter() - started, 1), "host": platform.node(),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    plot(scores, data, out_dir / "scores.png")
    _print(report, console)
    console.print(f"report: {out_dir / 'report.json'}  plot: {out_dir / 'scores.png'}")
    return report


def _print(report: dict, console: Console) -> None:
    table = Table(title=f"{report['detector']} on {report['dataset']}: F1 per entity (score = mean z^2 | max z)")
    for col in ("entity", "best F1", "best F1 (PA)", "val-thr F1", "val-thr F1 (PA)", "train s"):
        table.add_column(col, justify="right")
    rows = list(report["entities"].items()) + [("mean", {**{h: {k: {"f1": v} for k, v in s.items()}
                                                            for h, s in report["mean"].items()}, "train_seconds": ""})]
    for name, r in rows:
        cells = [f"{r['mean_sq'][k]['f1']:.3f} | {r['max'][k]['f1']:.3f}"
                 for k in ("best_f1", "best_f1_pa", "val_f1", "val_f1_pa")]
        table.add_row(name, *cells, str(r["train_seconds"]))
    console.print(table)
