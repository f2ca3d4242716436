"""`omnistream evaluate --system`: detection and root cause on labelled systems, honestly.

For each fold of the system (offline.systems), detector and seed:
- a system detector (input kind ``system``, e.g. ``topomad``) trains on the system's flattened
  train split with the call graph in its config, calibrates POT on the newest 20 % (no labels),
  scores the test split as the worker would and decides with SPOT; each node's score (its
  metrics' reduction) is calibrated by a POT of its own on the same held-out scores, so that
  nodes compare;
- a per-entity detector (z-score, PCA, DC-VAE, ...) runs on every node alone, exactly as
  ``evaluate`` does; the system score is the largest calibrated score over the nodes, the system
  is flagged when any node is, and nodes rank by their calibrated scores (the fallback every
  deployment has);
- random scores and flag-every-point, from the same run.
Detection: best F1 without and with point-adjust (thresholds from the test labels: an upper
bound), F1 and flagged share at the deployed threshold; counts pooled over folds.
Root cause, per fault (its root-cause entity and kind from the dataset), two protocols:
- onset given (RCAEval's): nodes ranked by their largest score in the ``after`` rows from the
  fault's first labelled row; BARO's rule on the raw metrics (topology.rootcause) and a random
  ranking in the same run;
- end to end (as the worker does): the ranking at the row where the first incident opens
  within the fault's rows (``open_after`` flagged rows in a row open one, ``resolve_after``
  normal rows close it, as the worker's decide step), and the share of faults that got one.
AC@1, AC@3 and Avg@5 per fault kind and over all faults. Labels choose nothing: they only score.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from omnistream.detectors.reduce import node_scores
from omnistream.detectors.registry import detector_class
from omnistream.offline import metrics
from omnistream.offline import evaluate
from omnistream.offline.fit import Calibration
from omnistream.offline.deployed import deployed_decisions
from omnistream.offline.fit_system import fit_system
from omnistream.offline.incidents import OPEN_AFTER, RESOLVE_AFTER, incident_spans
from omnistream.offline.parallel import run_all, threads_per_job
from omnistream.offline.systems import SystemSeries
from omnistream.topology.rootcause import accuracy_at, average_at, baro_scores, rank_entities

SCORE_FREE = ("random", "flag_all")
ENTITY_BASELINES = ["zscore", "zscore_centred", "pca"]  # per-entity detectors every system run is measured against
AFTER_ROWS = 5  # rows from a fault's onset that the onset-given rankings read
BEFORE_ROWS = 60  # rows before the onset BARO fits its median and IQR on
DETECTION = ("best", "best_pa", "deployed")  # of evaluate's figures, those a system run reports


@dataclass
class SystemRun:
    """What one (detector, seed, fold) produced on the fold's test split."""

    detector: str
    seed: int
    fold: int
    scores: np.ndarray  # (T,) system score
    flags: np.ndarray | None  # (T,) deployed decisions
    node_scores: np.ndarray  # (T, N) comparable across nodes (calibrated), for ranking
    train_seconds: float = 0.0


def is_system_detector(name: str) -> bool:
    return name not in SCORE_FREE and detector_class(name).input_kind == "system"


def run_one(detector: str, seed: int, fold: int, system: SystemSeries, config: dict, calibration: Calibration,
            threads: int) -> SystemRun:
    torch.set_num_threads(threads)
    n, nodes = len(system.test), len(system.nodes)
    rng = np.random.default_rng(seed)
    if detector == "random":
        return SystemRun(detector, seed, fold, rng.random(n), None, rng.random((n, nodes)))
    if detector == "flag_all":
        return SystemRun(detector, seed, fold, np.ones(n), np.ones(n, dtype=bool), rng.random((n, nodes)))
    if is_system_detector(detector):
        return _system_run(detector, seed, fold, system, config, calibration)
    return _fleet_run(detector, seed, fold, system, config, calibration)


def _system_run(detector: str, seed: int, fold: int, system: SystemSeries, config: dict,
                calibration: Calibration) -> SystemRun:
    fit = fit_system(detector, system, {**config, "seed": seed}, calibration)
    d = fit.fitted.detector
    flat = system.flat()
    decided = deployed_decisions(d, fit.fitted.pot, flat.train, flat.test, system.step_seconds,
                                 calibration.shift, calibration.adapt,
                                 per_metric=True)
    nodes = node_scores(decided.per_metric, len(system.nodes), d.reduction)
    calibrated = np.stack([pot.calibrated(nodes[:, i]) for i, pot in enumerate(fit.node_pots)], axis=1)
    return SystemRun(detector, seed, fold, decided.scores, decided.flags, calibrated, d.train_seconds)


def _fleet_run(detector: str, seed: int, fold: int, system: SystemSeries, config: dict,
               calibration: Calibration) -> SystemRun:
    """Each node by its own model, as ``evaluate`` runs an entity."""
    runs = [evaluate.run_one(detector, seed, entity, config, calibration, torch.get_num_threads())
            for entity in system.entities()]
    calibrated = np.stack([r.calibrated() for r in runs], axis=1)
    flagged = np.stack([r.flags for r in runs], axis=1).any(axis=1)
    return SystemRun(detector, seed, fold, calibrated.max(axis=1), flagged, calibrated,
                     sum(r.train_seconds for r in runs))


def incident_opens(flags: np.ndarray, open_after: int = OPEN_AFTER) -> np.ndarray:
    """Rows where an incident's open event is sent (offline.incidents: the worker's decide rule)."""
    return np.array([s.alert for s in incident_spans(flags, open_after)], dtype=int)


@dataclass
class Rankings:
    """Per fault: the ranking (entity names, best first) or None where there was none."""

    onset: list[list[str]] = field(default_factory=list)
    end_to_end: list[list[str] | None] = field(default_factory=list)


def rankings(run: SystemRun, system: SystemSeries, after: int = AFTER_ROWS, open_after: int = OPEN_AFTER) -> Rankings:
    out = Rankings()
    opens = incident_opens(run.flags, open_after) if run.flags is not None else np.array([], dtype=int)
    for fault in system.faults:
        rows = run.node_scores[fault.start:fault.start + after]
        out.onset.append([name for name, _ in rank_entities(np.nanmax(rows, axis=0), system.nodes)])
        inside = opens[(opens >= fault.start) & (opens < fault.end)]
        out.end_to_end.append([name for name, _ in rank_entities(run.node_scores[inside[0]], system.nodes)]
                              if len(inside) else None)
    return out


def baro_rankings(system: SystemSeries, before: int = BEFORE_ROWS, after: int = AFTER_ROWS) -> list[list[str]]:
    """BARO with the onset given: median and IQR from the ``before`` rows before it (the test
    split's, completed by the train split's newest when the test has fewer)."""
    out = []
    for fault in system.faults:
        history = np.concatenate([system.train, system.test[:fault.start]])[-before:]
        scores = baro_scores(history, system.test[fault.start:fault.start + after])
        out.append([name for name, _ in rank_entities(scores, system.nodes)])
    return out


def root_cause_figures(ranked: list[list[str] | None], causes: list[str], kinds: list[str]) -> dict:
    """AC@1, AC@3, Avg@5 over all faults and per kind; a fault without a ranking counts as
    missed (AC 0), and ``covered`` is the share that had one."""
    out = {}
    groups = {"all": list(range(len(causes)))} | {k: [i for i, x in enumerate(kinds) if x == k]
                                                  for k in sorted(set(kinds)) if k}
    for group, index in groups.items():
        got = [ranked[i] or [] for i in index]
        want = [causes[i] for i in index]
        out[group] = {"faults": len(index), "covered": float(np.mean([ranked[i] is not None for i in index])),
                      "ac1": accuracy_at(got, want, 1), "ac3": accuracy_at(got, want, 3),
                      "avg5": average_at(got, want, 5)}
    return out


def run(dataset: str, folds: list[SystemSeries], detectors: list[str], configs: dict[str, dict] | None = None,
        seeds: int = 3, calibration: Calibration | None = None, out_dir: Path = Path("reports/system"),
        jobs: int = 1, console: Console | None = None) -> dict:
    console = console or Console()
    configs = configs or {}
    calibration = calibration or Calibration()
    names = list(dict.fromkeys(list(detectors) + ENTITY_BASELINES + list(SCORE_FREE)))
    for name in names:
        if name not in SCORE_FREE:
            detector_class(name)  # an unknown name fails before any training
    tasks = [(d, seed, k) for d in names for seed in evaluate.seeds_of(d, seeds, configs.get(d))
             for k in range(len(folds))]
    calls = [(d, seed, k, folds[k], configs.get(d, {}), calibration, threads_per_job(jobs)) for d, seed, k in tasks]
    started = time.perf_counter()
    runs: list[SystemRun] = []
    for r in run_all(run_one, calls, jobs, f"{dataset}: {len(tasks)} fits", console):
        runs.append(r)
        best = metrics.best_f1(r.scores, folds[r.fold].labels).f1
        console.print(f"{r.detector} seed {r.seed} fold {r.fold}: best F1 {best:.3f}"
                      + (f", trained in {r.train_seconds:.1f} s" if r.train_seconds else ""))
    report = _report(dataset, folds, names, runs, calibration.open_after)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["host"] = platform.node()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(markdown(report))
    print_report(report, console)
    console.print(f"report: {out_dir / 'report.json'}, {out_dir / 'report.md'}")
    return report


def _detection(runs: list[SystemRun], folds: list[SystemSeries]) -> dict:
    """Pooled-over-folds detection figures of one detector and seed: evaluate's own per-entity
    counts, each fold's system taken as one entity."""
    per_fold = {str(r.fold): evaluate.entity_metrics(evaluate.EntityRun(r.detector, r.seed, str(r.fold), r.scores,
                                                                         r.flags, None, r.train_seconds),
                                                     folds[r.fold].labels, folds[r.fold].step_seconds) for r in runs}
    pooled = evaluate.summarise(per_fold)
    return {kind: {"f1": v["pooled_f1"], "precision": v["pooled_precision"], "recall": v["pooled_recall"],
                   "flagged_share": v["flagged_share"]} for kind, v in pooled.items() if kind in DETECTION}


def _report(dataset: str, folds: list[SystemSeries], names: list[str], runs: list[SystemRun],
            open_after: int = OPEN_AFTER) -> dict:
    causes = [f.entity for s in folds for f in s.faults]
    kinds = [f.kind for s in folds for f in s.faults]
    detectors = {}
    for name in names:
        per_seed = []
        for seed in sorted({r.seed for r in runs if r.detector == name}):
            mine = sorted((r for r in runs if r.detector == name and r.seed == seed), key=lambda r: r.fold)
            ranked = [rankings(r, folds[r.fold], open_after=open_after) for r in mine]
            per_seed.append({"detection": _detection(mine, folds),
                             "onset": root_cause_figures([x for rk in ranked for x in rk.onset], causes, kinds),
                             "end_to_end": root_cause_figures([x for rk in ranked for x in rk.end_to_end], causes,
                                                              kinds),
                             "train_seconds": sum(r.train_seconds for r in mine)})
        detectors[name] = {"seeds": len(per_seed), "system": is_system_detector(name),
                           "summary": _over_seeds(per_seed)}
    baro = [x for s in folds for x in baro_rankings(s)]
    labels = np.concatenate([s.labels for s in folds])
    return {"dataset": dataset, "folds": len(folds), "nodes": folds[0].nodes, "faults": len(causes),
            "anomaly_rate": float(labels.mean()), "points": int(len(labels)),
            "protocol": {"after_rows": AFTER_ROWS, "before_rows": BEFORE_ROWS, "open_after": open_after,
                         "resolve_after": RESOLVE_AFTER},
            "labels_used_for": "scoring only: best F1 thresholds (an upper bound) and the root causes of the faults; "
                               "deployed thresholds are label-free POT/SPOT on the train split's newest 20 %",
            "detectors": detectors, "baro": root_cause_figures(baro, causes, kinds)}


def _over_seeds(per_seed: list[dict]) -> dict:
    """Mean and std over seeds of every number in the nested figures."""
    def merge(values: list) -> object:
        if isinstance(values[0], dict):
            return {k: merge([v[k] for v in values]) for k in values[0]}
        array = np.array(values, dtype=float)
        return {"mean": float(np.nanmean(array)), "std": float(np.nanstd(array))}
    return merge(per_seed)


def _fmt(value: dict | None) -> str:
    if value is None:
        return "—"
    return f"{value['mean']:.3f} ± {value['std']:.3f}" if value["std"] > 0 else f"{value['mean']:.3f}"


def _rows(report: dict) -> list[list[str]]:
    rows = []
    for name, d in report["detectors"].items():
        s = d["summary"]
        det = s["detection"]
        rows.append([name + (" (system)" if d["system"] else ""), str(d["seeds"]), _fmt(det["best"]["f1"]),
                     _fmt(det["best_pa"]["f1"]), _fmt(det.get("deployed", {}).get("f1")),
                     _fmt(det.get("deployed", {}).get("flagged_share")),
                     _fmt(s["onset"]["all"]["ac1"]), _fmt(s["onset"]["all"]["ac3"]), _fmt(s["onset"]["all"]["avg5"]),
                     _fmt(s["end_to_end"]["all"]["covered"]), _fmt(s["end_to_end"]["all"]["ac1"]),
                     _fmt(s["end_to_end"]["all"]["ac3"])])
    b = report["baro"]["all"]
    rows.append(["BARO (root cause only)", "1", "—", "—", "—", "—", f"{b['ac1']:.3f}", f"{b['ac3']:.3f}",
                 f"{b['avg5']:.3f}", "—", "—", "—"])
    return rows


HEADER = ["detector", "seeds", "best F1", "best F1 PA", "deployed F1", "flagged", "onset AC@1", "onset AC@3",
          "onset Avg@5", "e2e events", "e2e AC@1", "e2e AC@3"]


def markdown(report: dict) -> str:
    lines = [f"**{report['dataset']}** as one system of {len(report['nodes'])} entities, {report['folds']} folds, "
             f"{report['points']} test points (system anomaly rate {report['anomaly_rate']:.2%}), "
             f"{report['faults']} faults. F1 pooled over folds; PA = point-adjust; deployed = label-free POT/SPOT; "
             "onset = root cause ranked with the onset given; e2e = the ranking of the first incident opening in "
             "the fault, and the share of faults that had one. Mean ± std over seeds.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    kinds = [k for k in report["baro"] if k != "all"]
    if not kinds:  # faults without kinds (taken from the labels)
        return "\n".join(lines) + "\n"
    lines += ["", "Root cause with the onset given, by fault kind (AC@1 / AC@3 / Avg@5):", ""]
    lines += ["| detector | " + " | ".join(f"{k} ({report['baro'][k]['faults']})" for k in kinds) + " |",
              "|---|" + "---|" * len(kinds)]
    for name, d in list(report["detectors"].items()) + [("BARO", None)]:
        figures = report["baro"] if d is None else {k: {m: v["mean"] for m, v in d["summary"]["onset"][k].items()}
                                                     for k in kinds}
        lines.append(f"| {name} | " + " | ".join(f"{figures[k]['ac1']:.2f} / {figures[k]['ac3']:.2f} / "
                                                 f"{figures[k]['avg5']:.2f}" for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def print_report(report: dict, console: Console) -> None:
    """Two tables (detection, root cause), each narrow enough for a terminal."""
    title = f"{report['dataset']} as one system: {report['faults']} faults over {report['folds']} folds"
    for part, columns in (("detection", range(0, 6)), ("root cause", [0, 1, *range(6, len(HEADER))])):
        table = Table(title=f"{title}: {part}")
        for i in columns:
            table.add_column(HEADER[i], justify="left" if i == 0 else "right")
        for row in _rows(report):
            if part == "root cause" or row[2] != "—":
                table.add_row(*[row[i] for i in columns])
        console.print(table)
