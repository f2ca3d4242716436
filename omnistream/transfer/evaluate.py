"""`omnistream evaluate-transfer`: OmniTransfer's RO2/RO3 (sections 5.3-5.5) on a labelled
dataset, every figure from the same run.

Protocol: hold out entities (a seeded choice, or named ones); cluster the others' train
splits and fit a base model per cluster; give each held-out entity only the first 1, 2, ...
days of its train split. Compared, per held-out entity and number of days:
- ``scratch``: one model per entity trained from scratch on the same short data;
- ``full`` / ``partial``: transfer from the nearest cluster's base model, one strategy always;
- ``adaptive``: OmniTransfer, full when DiffScore <= beta, else partial. The transfers are
  deterministic, so adaptive at any beta is read off the full and partial runs: the beta
  sweep (paper Fig. 9) costs no extra training;
- ``entity_full_train``: one model per entity on its whole train split (the reference),
  and the baselines random, flag-all, z-score and PCA fitted on the same whole split.
All models calibrate their threshold on the newest 20 % of what they were given (no labels)
and score the test split as the worker does. Reported: best F1 without and with
point-adjust, F1 and flagged share at the deployed threshold (SPOT), pooled over entities
and as a mean; CPU seconds of every fit, clustering and base models included; initialisation
time = the fewest days at which an approach's pooled best F1 (no point-adjust) comes within
0.01 of the full-train reference. Ablations: uniform weights (alpha = 0), no NCC alignment.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from omnistream.offline.datasets import EntitySeries
from omnistream.offline.deployed import deployed_decisions
from omnistream.offline.evaluate import EntityRun, entity_metrics, summarise
from omnistream.offline.fit import Calibration, Fitted, fit_entity
from omnistream.transfer.adapt import transfer
from omnistream.transfer.base_models import base_folder, fit_per_cluster, load_detector, load_index
from omnistream.transfer.config import TransferConfig
from omnistream.transfer.registry import ClusterRegistry
from omnistream.transfer.whac import ClusterConfig, cluster_entities

TOLERANCE = 0.01  # F1 within this of the full-train reference counts as reached
BETAS = [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]


@dataclass
class Protocol:
    detector: str = "dcvae"
    config: dict = field(default_factory=dict)
    days: list[int] = field(default_factory=lambda: [1, 2, 3])
    points_per_day: int = 1440
    holdout: int = 5
    holdout_entities: list[str] | None = None
    seed: int = 0
    ablations: bool = True
    cluster: dict = field(default_factory=dict)  # ClusterConfig overrides
    transfer: dict = field(default_factory=dict)  # TransferConfig overrides


def split_entities(data: list[EntitySeries], protocol: Protocol) -> tuple[list[EntitySeries], list[EntitySeries]]:
    """(held out, source): named entities, or a seeded choice of ``holdout``."""
    names = [s.entity for s in data]
    if protocol.holdout_entities:
        unknown = set(protocol.holdout_entities) - set(names)
        if unknown:
            raise ValueError(f"held-out entities not in the dataset: {sorted(unknown)}")
        held = set(protocol.holdout_entities)
    else:
        if protocol.holdout >= len(names):
            raise ValueError(f"cannot hold out {protocol.holdout} of {len(names)} entities")
        held = set(np.random.default_rng(protocol.seed).choice(names, size=protocol.holdout, replace=False).tolist())
    return [s for s in data if s.entity in held], [s for s in data if s.entity not in held]


def test_run(name: str, fitted: Fitted, given: np.ndarray, series: EntitySeries, cpu: float) -> EntityRun:
    """Score the test split after the data the model was given, decide as the worker (SPOT and
    level shifts, offline.deployed)."""
    calibration = Calibration()
    decided = deployed_decisions(fitted.detector, fitted.pot, given, series.test, series.step_seconds or 60.0,
                                 calibration.shift)
    return EntityRun(name, 0, series.entity, decided.scores, decided.flags, decided.thresholds, cpu,
                     shifts=len(decided.shifts))


def _timed(fn, *args, **kwargs):
    started = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - started


class Evidence:
    """Runs the protocol and keeps every per-entity result for the tables and the beta sweep."""

    def __init__(self, data: list[EntitySeries], protocol: Protocol, out_dir: Path, console: Console):
        self.protocol, self.out_dir, self.console = protocol, Path(out_dir), console
        self.held, self.source = split_entities(data, protocol)
        self.calibration = Calibration()
        self.transfer_config = TransferConfig(**protocol.transfer)
        self.results: dict[str, dict] = {}  # approach key -> {entity: metrics}
        self.cpu: dict[str, float] = {}
        self.diff: dict[str, dict[str, float]] = {}  # day key -> entity -> DiffScore
        self.betas: dict[str, float] = {}  # clustering tag -> the base models' label-free beta

    def record(self, key: str, run: EntityRun, labels: np.ndarray) -> None:
        self.results.setdefault(key, {})[run.entity] = entity_metrics(run, labels)
        self.cpu[key] = self.cpu.get(key, 0.0) + run.train_seconds

    def prepare_clusters(self, tag: str, overrides: dict) -> tuple[Path, float]:
        folder = self.out_dir / f"clusters-{tag}"
        metrics_names = self.source[0].metrics
        config = ClusterConfig(**{**self.protocol.cluster, **overrides})
        registry, cpu_cluster = _timed(cluster_entities, {s.entity: s.train for s in self.source}, metrics_names,
                                       config)
        registry.save(folder)
        entries, cpu_base = _timed(fit_per_cluster, self.protocol.detector, folder,
                                   {s.entity: s.train for s in self.source}, self.protocol.config, self.calibration)
        self.betas[tag] = load_index(folder).beta
        self.console.print(f"[{tag}] {registry.count} clusters ({cpu_cluster:.1f} CPU s), {len(entries)} base models "
                           f"({cpu_base:.1f} CPU s), label-free beta {self.betas[tag]:.3g}")
        self.cpu[f"clustering:{tag}"] = cpu_cluster
        self.cpu[f"base_models:{tag}"] = cpu_base
        return folder, cpu_cluster + cpu_base

    def transfer_runs(self, folder: Path, series: EntitySeries, days: int, tag: str) -> None:
        registry, index = ClusterRegistry.load(folder), load_index(folder)
        given = series.train[: days * self.protocol.points_per_day]
        cluster, _ = registry.nearest_cluster(given)
        base = load_detector(base_folder(folder) / index.models[cluster].checkpoint)
        reference = index.models[cluster].reference
        for strategy in ("full", "partial"):
            config = self.transfer_config.model_copy(update={"strategy": strategy})
            result = transfer(base, reference, given, config, self.calibration)
            run = test_run(strategy, result.fitted, given, series, result.cpu_seconds)
            self.record(f"{tag}:{strategy}:{days}", run, series.labels)
            if result.diff_score is not None:
                self.diff.setdefault(f"{tag}:{days}", {})[series.entity] = result.diff_score

    def run(self) -> dict:
        p = self.protocol
        self.console.print(f"held out: {', '.join(s.entity for s in self.held)}; source: {len(self.source)} entities")
        folder, _ = self.prepare_clusters("whac", {})
        ablations = {"uniform_weights": {"alpha": 0.0}, "no_alignment": {"align": False}} if p.ablations else {}
        ablation_folders = {tag: self.prepare_clusters(tag, o)[0] for tag, o in ablations.items()}
        config = p.config
        for series in self.held:
            labels = series.labels
            fitted, cpu = _timed(fit_entity, p.detector, series.train, config, self.calibration)
            self.record("entity_full_train", test_run(p.detector, fitted, series.train, series, cpu), labels)
            for baseline in ("zscore", "pca"):
                fitted, cpu = _timed(fit_entity, baseline, series.train, {}, self.calibration)
                self.record(baseline, test_run(baseline, fitted, series.train, series, cpu), labels)
            n = len(series.test)
            self.record("random", EntityRun("random", 0, series.entity, np.random.default_rng(p.seed).random(n),
                                            None, None, 0.0), labels)
            self.record("flag_all", EntityRun("flag_all", 0, series.entity, np.ones(n), np.ones(n, dtype=bool),
                                              np.ones(n), 0.0), labels)
            for days in p.days:
                given = series.train[: days * p.points_per_day]
                fitted, cpu = _timed(fit_entity, p.detector, given, config, self.calibration)
                self.record(f"scratch:{days}", test_run("scratch", fitted, given, series, cpu), labels)
                self.transfer_runs(folder, series, days, "whac")
                if days == p.days[0]:
                    for tag, ablation_folder in ablation_folders.items():
                        self.transfer_runs(ablation_folder, series, days, tag)
            self.console.print(f"{series.entity}: done")
        return self.report()

    # -- figures ------------------------------------------------------------------------------
    def adaptive(self, tag: str, days: int, beta: float) -> dict[str, dict]:
        """Per entity, the full run where DiffScore <= beta, else the partial run."""
        diff = self.diff.get(f"{tag}:{days}", {})
        full, partial = self.results[f"{tag}:full:{days}"], self.results[f"{tag}:partial:{days}"]
        return {e: (full[e] if diff.get(e, np.inf) <= beta else partial[e]) for e in full}

    def adaptive_row(self, tag: str, days: int) -> dict:
        """Figures of adaptive transfer: each entity's chosen run, with that run's own CPU seconds."""
        chosen = self.adaptive(tag, days, self.beta(tag))
        return {**summarise(chosen), "cpu_seconds": round(sum(r["train_seconds"] for r in chosen.values()), 2)}

    def beta(self, tag: str) -> float:
        """The beta given, else the label-free one of the base models clustered as ``tag``."""
        return self.transfer_config.beta if self.transfer_config.beta is not None else self.betas[tag]

    def report(self) -> dict:
        p = self.protocol
        beta = self.beta("whac")
        rows: dict[str, dict] = {}
        for key, per_entity in self.results.items():
            rows[key] = {**summarise(per_entity), "cpu_seconds": round(self.cpu.get(key, 0.0), 2)}
        for days in p.days:
            rows[f"whac:adaptive:{days}"] = self.adaptive_row("whac", days)
        for tag in ("uniform_weights", "no_alignment"):
            if f"{tag}:full:{p.days[0]}" in self.results:
                rows[f"{tag}:adaptive:{p.days[0]}"] = self.adaptive_row(tag, p.days[0])
        reference = rows["entity_full_train"]["best"]["pooled_f1"]
        overhead = self.cpu["clustering:whac"] + self.cpu["base_models:whac"]
        fleet, held = len(self.held) + len(self.source), len(self.held)
        per_entity_full = rows["entity_full_train"]["cpu_seconds"] / held
        train_days = float(np.mean([len(s.train) for s in self.held])) / p.points_per_day
        init = {}
        for approach in ("scratch", "whac:adaptive", "whac:full", "whac:partial"):
            reached = [d for d in p.days if rows[f"{approach}:{d}"]["best"]["pooled_f1"] >= reference - TOLERANCE]
            first = min(reached) if reached else None
            at = first if first is not None else p.days[-1]
            # Fleet cost: every entity of the dataset gets this approach's model (per-entity CPU
            # measured on the held-out ones), plus clustering and base models once.
            fleet_cpu = rows[f"{approach}:{at}"]["cpu_seconds"] / held * fleet + \
                (overhead if approach.startswith("whac") else 0.0)
            init[approach] = {"days_to_reference": first, "full_train_days": round(train_days, 2),
                              "initialisation_change": None if first is None else round(first / train_days - 1, 4),
                              "cost_at_days": at, "fleet_cpu_seconds": round(fleet_cpu, 2),
                              "fleet_cpu_change": round(fleet_cpu / (per_entity_full * fleet) - 1, 4)}
        sweep = {str(b): {str(d): summarise(self.adaptive("whac", d, b))["best"]["pooled_f1"] for d in p.days}
                 for b in sorted(set(BETAS) | {round(beta, 3)})}
        report = {"protocol": asdict(p), "held_out": [s.entity for s in self.held],
                  "source": [s.entity for s in self.source], "beta": beta,
                  "beta_rule": "given" if self.transfer_config.beta is not None else
                  "label-free: 75th percentile of the clustered entities' DiffScores", "reference_best_f1": reference,
                  "rows": rows, "initialisation": init, "beta_sweep": sweep, "diff_scores": self.diff,
                  "per_entity": self.results,
                  "overhead_cpu_seconds": {k: round(v, 2) for k, v in self.cpu.items() if ":" in k and
                                           k.split(":")[0] in ("clustering", "base_models")},
                  "fleet": {"entities": fleet, "one_model_per_entity_cpu_seconds": round(per_entity_full * fleet, 2)},
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "report.json").write_text(json.dumps(report, indent=1))
        (self.out_dir / "report.md").write_text(markdown(report))
        plot_sweep(report, self.out_dir / "beta_sweep.png")
        self.console.print(table(report))
        return report


def _f(row: dict, kind: str, key: str = "pooled_f1") -> str:
    value = row.get(kind, {}).get(key)
    return "-" if value is None else f"{value:.3f}"


def ordered_rows(report: dict) -> list[str]:
    days = report["protocol"]["days"]
    keys = ["entity_full_train", "zscore", "pca", "random", "flag_all"]
    for d in days:
        keys += [f"scratch:{d}", f"whac:adaptive:{d}", f"whac:full:{d}", f"whac:partial:{d}"]
    keys += [k for k in report["rows"] if k.startswith(("uniform_weights:adaptive", "no_alignment:adaptive"))]
    return [k for k in keys if k in report["rows"]]


def table(report: dict) -> Table:
    t = Table(title=f"OmniTransfer on held-out {', '.join(report['held_out'])} "
                    f"({report['protocol']['detector']}, beta {report['beta']:.3g})")
    for column in ("approach:days", "best F1", "mean best F1", "best F1 PA", "deployed F1", "flagged", "CPU s"):
        t.add_column(column, justify="right", no_wrap=True)
    for key in ordered_rows(report):
        row = report["rows"][key]
        t.add_row(key, _f(row, "best"), _f(row, "best", "mean_f1"), _f(row, "best_pa"), _f(row, "deployed"),
                  _f(row, "deployed", "flagged_share"), f"{row['cpu_seconds']:.1f}")
    return t


def markdown(report: dict) -> str:
    lines = [f"# OmniTransfer evidence: {report['protocol']['detector']}", "",
             f"Held out: {', '.join(report['held_out'])}. Source (clustered, base models): "
             f"{len(report['source'])} entities. beta = {report['beta']:.3g} ({report['beta_rule']}). "
             "Pooled over held-out entities; "
             "best F1 uses test labels to pick the threshold (an upper bound), deployed F1 is the "
             "label-free SPOT threshold the worker runs.", "",
             "| approach:days | best F1 | mean best F1 | best F1 PA | deployed F1 | flagged | CPU s |",
             "|---|---|---|---|---|---|---|"]
    for key in ordered_rows(report):
        row = report["rows"][key]
        lines.append(f"| {key} | {_f(row, 'best')} | {_f(row, 'best', 'mean_f1')} | {_f(row, 'best_pa')} | "
                     f"{_f(row, 'deployed')} | {_f(row, 'deployed', 'flagged_share')} | {row['cpu_seconds']:.1f} |")
    fleet = report["fleet"]
    lines += ["", "Initialisation (days until pooled best F1 >= full-train reference - 0.01) and training cost of "
              f"the whole fleet of {fleet['entities']} entities (per-entity CPU s measured on the held-out ones; "
              "OmniTransfer includes clustering and base models; one model per entity on full train: "
              f"{fleet['one_model_per_entity_cpu_seconds']:.0f} CPU s):", "",
              "| approach | days | vs full train | fleet CPU s (at days) | vs one model per entity |",
              "|---|---|---|---|---|"]
    for approach, v in report["initialisation"].items():
        change = "not reached" if v["initialisation_change"] is None else f"{v['initialisation_change']:+.1%}"
        lines.append(f"| {approach} | {v['days_to_reference']} | {change} (of {v['full_train_days']} days) | "
                     f"{v['fleet_cpu_seconds']:.0f} ({v['cost_at_days']} d) | {v['fleet_cpu_change']:+.1%} |")
    lines += ["", "beta sweep (pooled best F1 of adaptive transfer):", "",
              "| beta | " + " | ".join(f"{d} d" for d in report["protocol"]["days"]) + " |",
              "|---|" + "---|" * len(report["protocol"]["days"])]
    for beta, by_day in report["beta_sweep"].items():
        lines.append(f"| {beta} | " + " | ".join(f"{v:.3f}" for v in by_day.values()) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    betas = [float(b) for b in report["beta_sweep"]]
    for i, d in enumerate(report["protocol"]["days"]):
        ax.plot(betas, [report["beta_sweep"][b][str(d)] for b in report["beta_sweep"]], "o-", color=f"C{i}",
                label=f"adaptive, {d} d")
        ax.axhline(report["rows"][f"whac:full:{d}"]["best"]["pooled_f1"], color=f"C{i}", ls=":", lw=1)
        ax.axhline(report["rows"][f"whac:partial:{d}"]["best"]["pooled_f1"], color=f"C{i}", ls="-", lw=0.6)
    ax.axhline(report["reference_best_f1"], color="k", ls="--", lw=1, label="one model per entity, full train")
    ax.set_xscale("log")
    ax.set_xlabel("beta (DiffScore relative to the base model's own cluster)")
    ax.set_ylabel("pooled best F1 (no point-adjust)")
    ax.set_title("beta sweep: dotted = full only, thin = partial only", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_protocol(data: list[EntitySeries], protocol: Protocol, out_dir: Path, console: Console | None = None) -> dict:
    return Evidence(data, protocol, out_dir, console or Console()).run()

