"""One fold of `omnistream evaluate-transfer` under one seed: OmniTransfer's RO2/RO3 (sections
5.3-5.5) on the entities the fold holds out, every figure from the same run.

The other entities' train splits are clustered (W-HAC, and the ablations: uniform weights,
no NCC alignment) and get a base model per cluster; each held-out entity is then given only
the first 1, 2, ... days of its train split. Per held-out entity and number of days:
- ``scratch``: the detector trained from scratch on the same short data;
- ``whac:full`` / ``whac:partial``: transfer from the nearest cluster's base model, one
  strategy always. The transfers are deterministic under the seed, so adaptive transfer at
  any beta is read off these two (the beta sweep, paper Fig. 9, costs no training);
- ``whac:base``: the base model served as it is (the cold start a new entity gets before
  its transfer), z-scored with the given days' statistics, with the base model's threshold;
- ``<ablation>:adaptive``: at the first day count, the transfer adaptive would choose with
  the ablation's clusters, base models and label-free beta;
- ``zscore`` / ``pca`` / ``seasonal`` at the same days: detectors that need no transfer;
- ``entity_full_train``: one model per entity on its whole train split (the reference), and
  random, flag-all, z-score, PCA and seasonal on the same split.
Every model calibrates its threshold on the newest 20 % of what it was given (no labels) and
decides on the test split as the worker does (SPOT, level shifts). CPU seconds are those of
every fit: clustering and base models apart, DiffScore included in a transfer's.

A base model must carry detection skill to be worth transferring: ``base_check`` scores the
test splits of (up to ``BASE_CHECK_MEMBERS``) source entities of each cluster with their
cluster's base model, z-scored with each entity's own train statistics, beside a z-score
fitted on the same train split (best F1, test labels: a check, not a choice).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from omnistream.detectors.base import Detector
from omnistream.detectors.export import load as load_model
from omnistream.offline.datasets import EntitySeries
from omnistream.offline.deployed import deployed_decisions
from omnistream.offline.evaluate import EntityRun, entity_metrics, summarise
from omnistream.offline.fit import Calibration, Fitted, fit_entity
from omnistream.transfer.adapt import cold_start, transfer
from omnistream.transfer.base_models import BaseIndex, base_folder, fit_per_cluster, load_detector, load_index
from omnistream.transfer.config import TransferConfig
from omnistream.transfer.registry import ClusterRegistry
from omnistream.transfer.whac import ClusterConfig, cluster_entities

ABLATIONS = {"uniform_weights": {"alpha": 0.0}, "no_alignment": {"align": False}}
NO_TRANSFER = ("zscore", "pca", "seasonal")  # detectors a new entity can simply fit on its own days
BASE_CHECK_MEMBERS = 5  # source entities per cluster whose test split checks the base model


@dataclass
class Protocol:
    detector: str = "tranad"
    config: dict = field(default_factory=dict)
    days: list[int] = field(default_factory=lambda: [1, 2, 4])
    points_per_day: int = 1440
    folds: int = 4
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    ablations: bool = True
    cluster: dict = field(default_factory=dict)  # ClusterConfig overrides
    transfer: dict = field(default_factory=dict)  # TransferConfig overrides


def fold_entities(names: list[str], folds: int) -> list[list[str]]:
    """Every entity held out exactly once: a fixed shuffle of the sorted names dealt into
    ``folds`` folds (the same folds under every seed, so that seeds vary the models only)."""
    if not 2 <= folds <= len(names):
        raise ValueError(f"folds must be between 2 and the {len(names)} entities; got {folds}")
    order = np.random.default_rng(0).permutation(sorted(names))
    return [sorted(order[k::folds].tolist()) for k in range(folds)]


def test_run(name: str, fitted: Fitted, given: np.ndarray, series: EntitySeries, cpu: float) -> EntityRun:
    """Score the test split after the data the model was given, decide as the worker (SPOT and
    level shifts, offline.deployed)."""
    decided = deployed_decisions(fitted.detector, fitted.pot, given, series.test, series.step_seconds or 60.0,
                                 Calibration().shift)
    return EntityRun(name, 0, series.entity, decided.scores, decided.flags, decided.thresholds, cpu,
                     shifts=len(decided.shifts))


def _timed(fn, *args, **kwargs):
    started = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - started


@dataclass
class Clusters:
    """One clustering of the fold's source entities with its base models."""

    folder: Path
    registry: ClusterRegistry
    index: BaseIndex
    cpu_clustering: float
    cpu_base_models: float

    def base(self, cluster: int) -> tuple[Detector, float, dict]:
        """(trainable base model, DiffScore reference, base threshold) of ``cluster``."""
        entry = self.index.models[cluster]
        _, info = load_model(base_folder(self.folder) / entry.model)
        return load_detector(base_folder(self.folder) / entry.checkpoint), entry.reference, info.calibration

    def nearest_base(self, given: np.ndarray) -> tuple[Detector, float, dict]:
        """``base`` of the cluster nearest the raw series ``given``."""
        return self.base(self.registry.nearest_cluster(given)[0])


class Fold:
    """Runs the protocol on one fold under one seed; ``run`` returns a JSON-able dict."""

    def __init__(self, data: list[EntitySeries], held_out: list[str], protocol: Protocol, seed: int, out_dir: Path):
        self.protocol, self.seed, self.out_dir = protocol, seed, Path(out_dir)
        self.held = [s for s in data if s.entity in held_out]
        self.source = [s for s in data if s.entity not in held_out]
        self.config = {**protocol.config, "seed": seed}
        self.calibration = Calibration()
        self.transfer_config = TransferConfig(**protocol.transfer)
        self.results: dict[str, dict] = {}  # row key -> {entity: entity_metrics}
        self.diff: dict[str, dict[str, float]] = {}  # "<tag>:<days>" -> entity -> DiffScore
        self.chosen: dict[str, dict[str, str]] = {}  # "<ablation>:<days>" -> entity -> strategy adaptive chose

    def record(self, key: str, run: EntityRun, labels: np.ndarray) -> None:
        self.results.setdefault(key, {})[run.entity] = entity_metrics(run, labels)

    def given(self, series: EntitySeries, days: int) -> np.ndarray:
        return series.train[: days * self.protocol.points_per_day]

    def clusters(self, tag: str, overrides: dict) -> Clusters:
        folder = self.out_dir / f"clusters-{tag}"
        train = {s.entity: s.train for s in self.source}
        config = ClusterConfig(**{**self.protocol.cluster, **overrides})
        registry, cpu_clustering = _timed(cluster_entities, train, self.source[0].metrics, config)
        registry.save(folder)
        _, cpu_base = _timed(fit_per_cluster, self.protocol.detector, folder, train, self.config, self.calibration)
        return Clusters(folder, registry, load_index(folder), cpu_clustering, cpu_base)

    def transfers(self, clusters: Clusters, series: EntitySeries, days: int) -> None:
        """Full and partial transfer (and, at the first day count, the cold-started base model)."""
        given = self.given(series, days)
        base, reference, base_pot = clusters.nearest_base(given)
        for strategy in ("full", "partial"):
            config = self.transfer_config.model_copy(update={"strategy": strategy})
            result = transfer(base, reference, given, config, self.calibration)
            self.record(f"whac:{strategy}:{days}", test_run(strategy, result.fitted, given, series, result.cpu_seconds),
                        series.labels)
            if result.diff_score is not None:
                self.diff.setdefault(f"whac:{days}", {})[series.entity] = result.diff_score
        if days == self.protocol.days[0]:
            fitted = cold_start(base, base_pot, given)
            self.record(f"whac:base:{days}", test_run("base", fitted, given, series, 0.0), series.labels)

    def ablation(self, tag: str, clusters: Clusters, series: EntitySeries, days: int) -> None:
        """The transfer adaptive chooses with the ablation's clusters and its own label-free beta."""
        given = self.given(series, days)
        base, reference, _ = clusters.nearest_base(given)
        config = clusters.index.resolve(self.transfer_config.model_copy(update={"strategy": "adaptive"}))
        result = transfer(base, reference, given, config, self.calibration)
        self.record(f"{tag}:adaptive:{days}", test_run(tag, result.fitted, given, series, result.cpu_seconds),
                    series.labels)
        self.chosen.setdefault(f"{tag}:{days}", {})[series.entity] = result.strategy

    def base_check(self, clusters: Clusters) -> dict:
        """Per cluster: best F1 on source members' test splits, base model vs z-score."""
        by_cluster: dict[int, list[EntitySeries]] = {}
        for s in self.source:
            c = clusters.registry.entities.get(s.entity)
            if c is not None:
                by_cluster.setdefault(c, []).append(s)
        rng = np.random.default_rng(self.seed)
        out = {}
        for c, members in sorted(by_cluster.items()):
            picked = rng.choice(len(members), size=min(len(members), BASE_CHECK_MEMBERS), replace=False)
            base_runs, z_runs = {}, {}
            base, _, base_pot = clusters.base(c)
            for i in sorted(picked):
                s = members[i]
                run = test_run("base", cold_start(base, base_pot, s.train), s.train, s, 0.0)
                base_runs[s.entity] = entity_metrics(run, s.labels)
                z = fit_entity("zscore", s.train, {}, self.calibration)
                z_runs[s.entity] = entity_metrics(test_run("zscore", z, s.train, s, 0.0), s.labels)
            base_f1, z_f1 = summarise(base_runs)["best"]["pooled_f1"], summarise(z_runs)["best"]["pooled_f1"]
            out[str(c)] = {"members": sorted(base_runs), "base_best_f1": base_f1, "zscore_best_f1": z_f1,
                           "beats_zscore": bool(base_f1 > z_f1)}
        return out

    def run(self) -> dict:
        p = self.protocol
        whac = self.clusters("whac", {})
        ablations = {tag: self.clusters(tag, o) for tag, o in ABLATIONS.items()} if p.ablations else {}
        for series in self.held:
            labels = series.labels
            fitted, cpu = _timed(fit_entity, p.detector, series.train, self.config, self.calibration)
            self.record("entity_full_train", test_run(p.detector, fitted, series.train, series, cpu), labels)
            for name in NO_TRANSFER:
                fitted, cpu = _timed(fit_entity, name, series.train, {}, self.calibration)
                self.record(name, test_run(name, fitted, series.train, series, cpu), labels)
            n = len(series.test)
            self.record("random", EntityRun("random", self.seed, series.entity,
                                            np.random.default_rng(self.seed).random(n), None, None, 0.0), labels)
            self.record("flag_all", EntityRun("flag_all", 0, series.entity, np.ones(n), np.ones(n, dtype=bool),
                                              np.ones(n), 0.0), labels)
            for days in p.days:
                given = self.given(series, days)
                fitted, cpu = _timed(fit_entity, p.detector, given, self.config, self.calibration)
                self.record(f"scratch:{days}", test_run("scratch", fitted, given, series, cpu), labels)
                for name in NO_TRANSFER:
                    fitted, cpu = _timed(fit_entity, name, given, {}, self.calibration)
                    self.record(f"{name}:{days}", test_run(name, fitted, given, series, cpu), labels)
                self.transfers(whac, series, days)
                if days == p.days[0]:
                    for tag, clusters in ablations.items():
                        self.ablation(tag, clusters, series, days)
        everything = {"whac": whac, **ablations}
        return {"seed": self.seed, "held_out": [s.entity for s in self.held],
                "source": [s.entity for s in self.source], "protocol": asdict(p),
                "true_rate": float(np.mean(np.concatenate([s.labels for s in self.held]))),
                "results": self.results, "diff_scores": self.diff, "chosen": self.chosen,
                "clusters": {tag: {"count": c.registry.count, "beta": c.index.beta, "cpu_clustering": c.cpu_clustering,
                                   "cpu_base_models": c.cpu_base_models} for tag, c in everything.items()},
                "base_check": self.base_check(whac)}
