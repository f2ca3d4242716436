"""`omnistream evaluate`: every detector on every entity of a labelled dataset, honestly.

For each detector, seed and entity: fit on the older 80 % of the train split, calibrate the
POT threshold on its newest 20 % (offline.fit; no labels), score the test split as the worker
does (each point the last of its own window), decide with SPOT as the worker does. Reported,
from the same run, for each detector and for the baselines (random scores, flag every point,
z-score, PCA):
- best F1 without point-adjust, then with point-adjust (thresholds chosen with test labels:
  an upper bound, not a deployable figure);
- F1 and the share of points flagged at the deployed label-free threshold, next to the true
  anomaly rate, and what the risk q promises checked without labels: the share flagged on the
  calibration split's second half by POT fitted on its first half (held-out false alarms);
- the F1 at a threshold chosen with the labels of the first half of the test split
  (OmniTransfer's protocol), labelled as such;
- at the deployed threshold, what an operator reads (offline.incidents): incidents opened per
  entity-day, the share that overlap a labelled segment, the share of segments found within a
  few points and the median delay, and the share of entities flagging at most twice their true
  anomaly rate;
each pooled over entities (TP/FP/FN summed, each entity at its own threshold) and as a mean
over entities; deep detectors as mean ± std over seeds. Writes report.json, report.md and
plots to the output folder.

An entity that cannot be used (offline.checks, before any training) or on which a fit fails is
left out of every detector's figures, with its reason in the report; the others go on.
"""

from __future__ import annotations

import json
import platform
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from omnistream.detectors.base import Detector
from omnistream.detectors.calibration import Pot
from omnistream.detectors.registry import create, detector_class
from omnistream.offline import metrics
from omnistream.offline.checks import screen
from omnistream.offline.datasets import DataError, EntitySeries, LeftOut
from omnistream.offline.fit import Calibration, fit_entity
from omnistream.offline.deployed import deployed_decisions
from omnistream.offline.incidents import OPEN_AFTER, WITHIN, IncidentCounts, incident_counts
from omnistream.offline.parallel import run_all, threads_per_job

BASELINES = ["random", "flag_all", "zscore", "pca", "seasonal"]  # always in the run
SCORE_FREE = {"random", "flag_all"}  # baselines that are not registry detectors


@dataclass
class EntityRun:
    """What one (detector, seed, entity) produced on the test split."""

    detector: str
    seed: int
    entity: str
    scores: np.ndarray  # (T,) point scores
    flags: np.ndarray | None  # (T,) deployed decisions; None where there is no threshold
    threshold: np.ndarray | None  # (T,) threshold in force
    train_seconds: float
    note: str | None = None  # what the fit reported (a fallback), or that its scores rank nothing
    center: float | None = None  # the typical score (calibrated score 0); None where there is no threshold
    shifts: int = 0  # level shifts recognised at the deployed threshold (each re-baselines and asks a refit)
    refits: int = 0  # refitted models that scored (offline.deployed)
    refit_seconds: float = 0.0
    held_out_alarms: float | None = None  # offline.fit.Fitted.held_out_alarms: its threshold on held-out history

    def calibrated(self) -> np.ndarray:
        """(score - typical) / (threshold in force - typical) per point: > 1 is anomalous."""
        return (self.scores - self.center) / np.maximum(self.threshold - self.center, 1e-12)


@dataclass
class FailedRun:
    """A (detector, seed, entity) that could not be fitted or scored."""

    detector: str
    seed: int
    entity: str
    reason: str
    kind: str  # "data" (a DataError: the entity's data) or "error" (anything else)
    traceback: str = ""


def attempt(detector: str, seed: int, series: EntitySeries, config: dict, calibration: Calibration,
            threads: int) -> EntityRun | FailedRun:
    """``run_one``, with a failure on this entity returned instead of ending the whole run."""
    try:
        return run_one(detector, seed, series, config, calibration, threads)
    except DataError as exc:
        return FailedRun(detector, seed, series.entity, str(exc), "data")
    except Exception as exc:  # reported with its traceback; the other entities go on
        return FailedRun(detector, seed, series.entity, f"{type(exc).__name__}: {exc}", "error",
                         traceback.format_exc())


def run_one(detector: str, seed: int, series: EntitySeries, config: dict, calibration: Calibration,
            threads: int) -> EntityRun:
    """Fit, calibrate and score one entity (runs in a worker process with ``--jobs``)."""
    import torch

    torch.set_num_threads(threads)
    n = len(series.test)
    if detector == "random":
        return EntityRun(detector, seed, series.entity, np.random.default_rng(seed).random(n), None, None, 0.0)
    if detector == "flag_all":
        return EntityRun(detector, seed, series.entity, np.ones(n), np.ones(n, dtype=bool), np.ones(n), 0.0)
    fitted = fit_entity(detector, series.train, {**config, "seed": seed}, calibration)
    d = fitted.detector
    def refit(data: np.ndarray) -> tuple[Detector, Pot] | None:
        try:
            again = fit_entity(detector, data, {**config, "seed": seed}, calibration)
        except DataError:  # the service would fail the request: the entity keeps its model
            return None
        return again.detector, again.pot

    decided = deployed_decisions(d, fitted.pot, series.train, series.test, series.step_seconds or 60.0,
                                 calibration.shift, calibration.adapt, refit=refit if calibration.refits else None,
                                 triggers=calibration.triggers)
    scores = decided.scores
    notes = [d.note] if d.note else []
    finite = scores[np.isfinite(scores)]
    if len(finite) and np.ptp(finite) == 0:
        notes.append("its test scores are all equal: they rank nothing (best F1 = flag every point)")
    return EntityRun(detector, seed, series.entity, scores, decided.flags, decided.thresholds, d.train_seconds,
                     "; ".join(notes) or None, fitted.pot.center, len(decided.shifts), len(decided.refits),
                     decided.refit_seconds, fitted.held_out_alarms())


def entity_metrics(run: EntityRun, labels: np.ndarray, step_seconds: float | None = None,
                   open_after: int = OPEN_AFTER) -> dict:
    best = metrics.best_f1(run.scores, labels)
    best_pa = metrics.best_f1(run.scores, labels, point_adjust=True)
    out = {
        "best": metrics.counts(run.scores >= best.threshold, labels).as_dict(),
        "best_pa": metrics.counts(metrics.point_adjust_scores(run.scores, labels) >= best_pa.threshold,
                                  labels).as_dict(),
        "test_label_threshold": metrics.f1_at_test_label_threshold(run.scores, labels).as_dict(),
        "train_seconds": round(run.train_seconds, 2),
    }
    out["best_pa"]["flagged_share"] = None  # the share of a point-adjusted decision is not a deployment's
    if run.flags is not None:
        out["deployed"] = metrics.counts(run.flags, labels).as_dict()
        out["deployed_pa"] = metrics.counts(run.flags, labels, point_adjust=True).as_dict()
        out["incidents"] = asdict(incident_counts(run.flags, labels, step_seconds, open_after=open_after))
        out["deployed"].update(shifts=run.shifts, refits=run.refits, refit_seconds=round(run.refit_seconds, 2),
                               held_out_alarms=run.held_out_alarms)
    return out


KINDS = ["best", "best_pa", "deployed", "deployed_pa"]


def summarise(per_entity: dict[str, dict]) -> dict:
    """Pooled (counts summed) and mean-over-entities figures of one detector and seed."""
    summary: dict = {}
    for kind in KINDS:
        rows = [e[kind] for e in per_entity.values() if kind in e]
        if not rows:
            continue
        pooled = sum((metrics.Counts(r["tp"], r["fp"], r["fn"], r["flagged"], r["points"]) for r in rows),
                     metrics.Counts())
        summary[kind] = {"pooled_f1": pooled.f1, "pooled_precision": pooled.precision,
                         "pooled_recall": pooled.recall, "mean_f1": float(np.mean([r["f1"] for r in rows])),
                         "flagged_share": pooled.flagged_share}
        if kind == "deployed":  # entities flagging at most twice their true anomaly rate; level shifts
            summary[kind]["within_2x"] = float(np.mean([r["flagged"] <= 2 * (r["tp"] + r["fn"]) for r in rows]))
            for key in ("shifts", "refits", "refit_seconds"):
                summary[kind][f"{key}_per_entity"] = float(np.mean([r.get(key, 0) for r in rows]))
            alarms = [r["held_out_alarms"] for r in rows if r.get("held_out_alarms") is not None]
            if alarms:  # what q promises, on normal data no fit saw (mean over entities)
                summary[kind]["held_out_alarms"] = float(np.mean(alarms))
    incidents = [e["incidents"] for e in per_entity.values() if "incidents" in e]
    if incidents:
        summary["incidents"] = sum((IncidentCounts(**i) for i in incidents), IncidentCounts()).as_dict()
    summary["test_label_threshold"] = {"mean_f1": float(np.mean([e["test_label_threshold"]["f1"]
                                                                 for e in per_entity.values()]))}
    return summary


def over_seeds(per_seed: list[dict]) -> dict:
    """Mean and std over seeds of every figure of ``summarise``."""
    out: dict = {}
    for kind in per_seed[0]:
        out[kind] = {}
        for key in [k for k in per_seed[0][kind] if all(k in s.get(kind, {}) for s in per_seed)]:
            values = np.array([s[kind][key] for s in per_seed], dtype=float)
            out[kind][key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out


def seeds_of(detector: str, seeds: int, config: dict | None = None) -> list[int]:
    """Detectors whose fit depends on the seed (and random scores) run with every seed;
    deterministic ones (and flag-all) once."""
    if detector == "flag_all":
        return [0]
    if detector == "random":
        return list(range(seeds))
    return list(range(seeds)) if detector_class(detector).stochastic(config or {}) else [0]


def run(dataset: str, data: list[EntitySeries], detectors: list[str], configs: dict[str, dict] | None = None,
        seeds: int = 3, calibration: Calibration | None = None, out_dir: Path = Path("reports/evaluate"),
        jobs: int = 1, console: Console | None = None, left_out: list[LeftOut] | None = None) -> dict:
    """Evaluate ``detectors`` and the baselines on ``data``; ``left_out`` lists entities already
    left out while loading. Raises DataError when no entity can be evaluated."""
    console = console or Console()
    configs = configs or {}
    calibration = calibration or Calibration()
    names = list(dict.fromkeys(list(detectors) + BASELINES))
    # An unknown name or hyper-parameter fails before any training; the windows set the length check.
    windows = {name: create(name, **configs.get(name, {})).window for name in names if name not in SCORE_FREE}
    data, unusable = screen(data, windows, calibration.fraction, labelled=True)
    left_out = list(left_out or []) + unusable
    for entity in unusable:
        console.print(f"[yellow]{entity.entity}: left out[/]: {entity.reason}")
    if not data:
        raise DataError("no entity can be evaluated: " + "; ".join(f"{e.entity}: {e.reason}" for e in left_out))
    by_entity = {s.entity: s for s in data}
    tasks = [(d, seed, s) for d in names for seed in seeds_of(d, seeds, configs.get(d)) for s in data]
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[EntityRun] = []
    failed: list[FailedRun] = []
    started = time.perf_counter()
    calls = [(d, seed, s, configs.get(d, {}), calibration, threads_per_job(jobs)) for d, seed, s in tasks]
    for r in run_all(attempt, calls, jobs, f"{dataset}: {len(tasks)} fits", console):
        if isinstance(r, FailedRun):
            failed.append(r)
            console.print(f"[yellow]{r.detector} seed {r.seed} {r.entity}: failed, entity left out[/]: {r.reason}")
            continue
        runs.append(r)
        labels = by_entity[r.entity].labels
        line = f"{r.detector} seed {r.seed} {r.entity}: best F1 {metrics.best_f1(r.scores, labels).f1:.3f}"
        if r.flags is not None:
            deployed = metrics.counts(r.flags, labels)
            line += f", deployed F1 {deployed.f1:.3f} (flagged {deployed.flagged_share:.1%})"
        console.print(line + (f", trained in {r.train_seconds:.1f} s" if r.train_seconds else ""))
    for entity in dict.fromkeys(f.entity for f in failed):  # out of every pool, so that pools compare
        first = next(f for f in failed if f.entity == entity)
        left_out.append(LeftOut(entity, f"{first.detector} seed {first.seed}: {first.reason}", first.kind))
    data = [s for s in data if s.entity not in {f.entity for f in failed}]
    runs = [r for r in runs if r.entity in {s.entity for s in data}]
    if not data:
        raise DataError("no entity could be evaluated: " + "; ".join(f"{e.entity}: {e.reason}" for e in left_out))
    report = _report(dataset, data, names, runs, configs, calibration, seeds)
    report["left_out"] = [{"entity": e.entity, "reason": e.reason, "kind": e.kind} for e in left_out]
    report["errors"] = [{"detector": f.detector, "seed": f.seed, "entity": f.entity, "traceback": f.traceback}
                        for f in failed if f.kind == "error"]
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["host"] = platform.node()
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(markdown(report))
    plot_scores(runs, by_entity, _best_detector(report), out_dir / "scores.png")
    plot_summary(report, out_dir / "summary.png")
    print_report(report, console)
    console.print(f"report: {out_dir / 'report.json'}, {out_dir / 'report.md'}  plots: {out_dir}/*.png")
    return report


def _report(dataset: str, data: list[EntitySeries], names: list[str], runs: list[EntityRun],
            configs: dict[str, dict], calibration: Calibration, seeds: int) -> dict:
    labels = {s.entity: s.labels for s in data}
    steps = {s.entity: s.step_seconds for s in data}
    detectors: dict = {}
    for name in names:
        per_seed, entities = [], {}
        for seed in sorted({r.seed for r in runs if r.detector == name}):
            per_entity = {r.entity: entity_metrics(r, labels[r.entity], steps[r.entity], calibration.open_after)
                          for r in runs
                          if r.detector == name and r.seed == seed}
            per_seed.append(summarise(per_entity))
            entities[str(seed)] = per_entity
        notes = {r.entity: r.note for r in runs if r.detector == name and r.note}
        detectors[name] = {"seeds": len(per_seed), "summary": over_seeds(per_seed), "entities": entities,
                           "notes": notes}
    all_labels = np.concatenate([s.labels for s in data])
    return {
        "dataset": dataset, "entities": [s.entity for s in data], "anomaly_rate": float(all_labels.mean()),
        "points": int(len(all_labels)), "seeds": seeds, "calibration": calibration.as_dict(), "configs": configs,
        "labels_used_for": "best F1 (with and without point-adjust) and test-label-threshold F1 only; "
                           "the deployed threshold is fitted on the train split's newest 20 % without labels",
        "detectors": detectors,
    }


def _best_detector(report: dict) -> str:
    learned = {k: v for k, v in report["detectors"].items() if k not in SCORE_FREE}
    return max(learned, key=lambda k: learned[k]["summary"]["best"]["pooled_f1"]["mean"])


def _cell(summary: dict, kind: str, key: str) -> str:
    if key not in summary.get(kind, {}):
        return "—"
    value = summary[kind][key]
    if value["std"] > 0:
        return f"{value['mean']:.3f} ± {value['std']:.3f}"
    return f"{value['mean']:.3f}"


COLUMNS = [("best F1", "best", "pooled_f1"), ("best F1, mean", "best", "mean_f1"),
           ("best F1 PA", "best_pa", "pooled_f1"), ("deployed F1", "deployed", "pooled_f1"),
           ("deployed F1, mean", "deployed", "mean_f1"), ("flagged", "deployed", "flagged_share"),
           ("deployed F1 PA", "deployed_pa", "pooled_f1"), ("entities flagging ≤ 2x true", "deployed", "within_2x"),
           ("held-out false alarms (q)", "deployed", "held_out_alarms"),
           ("level shifts / entity", "deployed", "shifts_per_entity"),
           ("refits / entity", "deployed", "refits_per_entity"),
           ("refit s / entity", "deployed", "refit_seconds_per_entity"),
           ("incidents / entity-day", "incidents", "per_entity_day"),
           ("incident precision", "incidents", "incident_precision"),
           (f"segments found ≤ {WITHIN} points", "incidents", "segment_recall"),
           ("median delay (points)", "incidents", "median_delay"),
           ("test-label-thr F1, mean", "test_label_threshold", "mean_f1")]


def markdown(report: dict) -> str:
    lines = [f"**{report['dataset']}**: {len(report['entities'])} entities, {report['points']} test points, "
             f"true anomaly rate {report['anomaly_rate']:.2%}. F1 pooled over entities (TP/FP/FN summed) unless "
             "marked mean; PA = point-adjust; deployed = the label-free POT/SPOT threshold the worker uses; "
             "flagged = share of points flagged at it; test-label-thr = threshold from the first half of the "
             "test labels (not label-free). Deep detectors: mean ± std over seeds.", "",
             "| detector | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for name, d in report["detectors"].items():
        cells = [_cell(d["summary"], kind, key) for _, kind, key in COLUMNS]
        lines.append(f"| {name} | {d['seeds']} | " + " | ".join(cells) + " |")
    remarks = _remarks(report)
    return "\n".join(lines + ([""] + [f"- {r}" for r in remarks] if remarks else [])) + "\n"


def _remarks(report: dict, left_out: bool = True) -> list[str]:
    """The entities left out of every figure, with their reasons, and what fits reported."""
    out = []
    if left_out and report.get("left_out"):
        out.append(f"{len(report['left_out'])} entities left out of every figure: " +
                   "; ".join(f"{e['entity']}: {e['reason']}" for e in report["left_out"]))
    for name, d in report["detectors"].items():
        for note, entities in _grouped(d.get("notes", {})).items():
            out.append(f"{name} on {', '.join(entities)}: {note}")
    return out


def _grouped(notes: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for entity, note in notes.items():
        grouped.setdefault(note, []).append(entity)
    return grouped


def print_report(report: dict, console: Console) -> None:
    table = Table(title=f"{report['dataset']}: {len(report['entities'])} entities, true anomaly rate "
                        f"{report['anomaly_rate']:.2%} (pooled F1 unless marked mean; PA = point-adjust)")
    table.add_column("detector")
    for title, _, _ in COLUMNS:
        table.add_column(title, justify="right")
    for name, d in report["detectors"].items():
        table.add_row(name, *[_cell(d["summary"], kind, key) for _, kind, key in COLUMNS])
    console.print(table)
    for remark in _remarks(report, left_out=False):  # the command prints the left-out table
        console.print(f"[yellow]{escape(remark)}[/]")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores(runs: list[EntityRun], data: dict[str, EntitySeries], detector: str, path: Path) -> None:
    """Test scores of ``detector`` (seed 0) per entity, deployed threshold dashed, labels shaded."""
    plt = _pyplot()
    chosen = [r for r in runs if r.detector == detector and r.seed == 0]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(12, 1.5 * len(chosen) + 0.6), squeeze=False)
    for ax, r in zip(axes[:, 0], chosen):
        ax.plot(r.scores, lw=0.6, color="tab:blue")
        if r.threshold is not None:
            ax.plot(r.threshold, lw=0.8, ls="--", color="black")
        for start, end in metrics.anomaly_segments(data[r.entity].labels):
            ax.axvspan(start, end, color="tab:red", alpha=0.25, lw=0)
        ax.set_yscale("symlog")
        ax.set_ylabel(r.entity, rotation=0, ha="right", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_title(f"{detector}: test scores, deployed threshold (dashed), labelled anomalies (red)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_summary(report: dict, path: Path) -> None:
    """Pooled best F1 and deployed F1 per detector, with the flagged share against the true rate."""
    plt = _pyplot()
    names = list(report["detectors"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.6))
    x = np.arange(len(names))
    for i, (kind, label) in enumerate([("best", "best F1"), ("deployed", "deployed F1")]):
        values = [report["detectors"][n]["summary"].get(kind, {}).get("pooled_f1", {"mean": 0.0})["mean"]
                  for n in names]
        errors = [report["detectors"][n]["summary"].get(kind, {}).get("pooled_f1", {"std": 0.0})["std"]
                  for n in names]
        ax1.bar(x + 0.4 * i - 0.2, values, 0.4, yerr=errors, label=label)
    ax1.set_xticks(x, names, rotation=30, fontsize=8)
    ax1.set_title("pooled F1 without point-adjust")
    ax1.legend(fontsize=8)
    shares = [report["detectors"][n]["summary"].get("deployed", {}).get("flagged_share", {"mean": 0.0})["mean"]
              for n in names]
    ax2.bar(x, shares, 0.6, color="tab:gray")
    ax2.axhline(report["anomaly_rate"], color="tab:red", ls="--", label="true anomaly rate")
    ax2.set_xticks(x, names, rotation=30, fontsize=8)
    ax2.set_yscale("log")
    ax2.set_title("share of points flagged at the deployed threshold")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

