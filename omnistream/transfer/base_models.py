"""One base model per cluster (OmniTransfer section 4.3.2), trained on the segments nearest
its centroid, with the context a window needs before each; any registered detector.

A base model is stored twice under ``<registry>/base/``: ``<cluster>.pt``, the exported
TorchScript file (cluster id and strategy ``base`` in its metadata), and ``<cluster>.ckpt``,
the trainable detector the transfer service fine-tunes. ``index.json`` lists them with the
DiffScore reference (the base model's trimmed mean score on held-out segments of its own
cluster) and a label-free ``beta``: the 75th percentile of the DiffScores of the clustered
entities against their own cluster's base model (a stretch of each entity's history), so that
an entity no more foreign than most of a cluster's own members gets the full transfer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from omnistream.detectors.base import Detector, point_scores, sliding_windows
from omnistream.detectors.calibration import fit_pot
from omnistream.detectors.neural import NeuralDetector
from omnistream.detectors.reduce import reduce_scores
from omnistream.detectors.registry import create
from omnistream.offline.fit import Calibration, Fitted, export_fitted, model_info
from omnistream.transfer.config import TransferConfig
from omnistream.transfer.diffscore import diff_score, trimmed_mean
from omnistream.transfer.registry import ClusterRegistry, RegistryError
from omnistream.transfer.segments import zscored

INDEX_NAME = "index.json"
BETA_QUANTILE = 0.75  # of the members' DiffScores: the label-free beta
MEMBER_POINTS = 1000  # points of each member's history its DiffScore is measured on
MEMBERS_PER_CLUSTER = 20  # members (a seeded sample) whose DiffScore is measured
DEFAULT_BETA = 1.5  # when no member could be measured (detectors without layers)


@dataclass
class BaseModelEntry:
    cluster: int
    detector: str
    model: str  # file name of the exported model under base/
    checkpoint: str
    sha256: str
    reference: float  # trimmed mean score on held-out segments of the cluster
    threshold: float
    train_windows: int
    cpu_seconds: float


@dataclass
class BaseIndex:
    models: dict[int, BaseModelEntry]
    beta: float  # label-free DiffScore threshold of the adaptive strategy
    member_diff_scores: dict[str, float]

    def resolve(self, config: TransferConfig) -> TransferConfig:
        """The config with ``beta`` taken from the base models where it is unset."""
        return config if config.beta is not None else config.model_copy(update={"beta": self.beta})


def base_folder(registry_dir: Path) -> Path:
    return Path(registry_dir) / "base"


def cluster_slices(registry: ClusterRegistry, zdata: dict[str, np.ndarray], cluster: int,
                   window: int) -> list[np.ndarray]:
    """Z-scored stretches (window - 1 + n, M) ending with each segment nearest the centroid."""
    n, out = registry.settings.length, []
    for entity, start in registry.nearest[cluster]:
        series = zdata.get(entity)
        if series is None:
            raise RegistryError(f"cluster {cluster} was made with entity {entity!r}, which the data given lacks")
        begin = max(0, start - (window - 1))
        piece = series[begin:start + n]
        if len(piece) >= window:
            out.append(piece)
    return out


def split_slices(slices: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train, held out): three of every four slices train, the fourth is held out."""
    return [s for i, s in enumerate(slices) if i % 4 != 3], slices[3::4] or slices[-1:]


def fit_base_model(detector_name: str, config: dict, slices: list[np.ndarray], calibration: Calibration) -> Fitted:
    """Train on three of every four slices; calibrate and take the DiffScore reference on the rest."""
    detector = create(detector_name, **config)
    train, held = split_slices(slices)
    w = detector.window
    detector.fit(np.concatenate([sliding_windows(s, w) for s in train]))
    scores = np.concatenate([reduce_scores(point_scores(detector, s[w - 1:], history=s[:w - 1]), detector.reduction)
                             for s in held if len(s) > w - 1])
    return Fitted(detector, fit_pot(scores, calibration.risk, calibration.level, calibration.depth), scores)


def fit_per_cluster(detector_name: str, registry_dir: Path, data: dict[str, np.ndarray], config: dict | None = None,
                    calibration: Calibration | None = None,
                    progress: Callable[[BaseModelEntry], None] | None = None) -> list[BaseModelEntry]:
    """A base model for every cluster of the registry in ``registry_dir``, from ``data``
    (entity -> raw train series), saved under ``base/`` with an index."""
    registry = ClusterRegistry.load(registry_dir)
    calibration = calibration or Calibration()
    config = config or {}
    window = create(detector_name, **config).window
    zdata = {e: zscored(s) for e, s in data.items() if e in {name for near in registry.nearest for name, _ in near}}
    folder = base_folder(registry_dir)
    folder.mkdir(parents=True, exist_ok=True)
    entries, members = [], {}
    for c in range(registry.count):
        slices = cluster_slices(registry, zdata, c, window)
        if not slices:
            raise RegistryError(f"cluster {c}: no segment has the {window - 1} points of context a window needs")
        started = time.process_time()
        fitted = fit_base_model(detector_name, config, slices, calibration)
        cpu = time.process_time() - started
        reference = trimmed_mean(fitted.calibration_scores)
        members[c] = member_diff_scores(fitted.detector, reference, registry, data, c)
        info = model_info(fitted, registry.metrics, cluster=str(c), strategy="base", diff_reference=reference,
                          registry_version=registry.version)
        sha = export_fitted(fitted, folder / f"{c}.pt", info, slices[0])
        save_detector(fitted.detector, folder / f"{c}.ckpt")
        entry = BaseModelEntry(c, detector_name, f"{c}.pt", f"{c}.ckpt", sha, reference, float(fitted.pot.threshold),
                               sum(len(s) - window + 1 for s in split_slices(slices)[0]), round(cpu, 3))
        entries.append(entry)
        if progress:
            progress(entry)
    scores = {e: v for m in members.values() for e, v in m.items()}
    beta = float(np.quantile(list(scores.values()), BETA_QUANTILE)) if scores else DEFAULT_BETA
    tmp = folder / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps({"registry_version": registry.version, "beta": beta, "member_diff_scores": scores,
                               "models": [asdict(e) for e in entries]}, indent=1))
    os.replace(tmp, folder / INDEX_NAME)
    return entries


def member_diff_scores(base: Detector, reference: float, registry: ClusterRegistry, data: dict[str, np.ndarray],
                       cluster: int) -> dict[str, float]:
    """DiffScore of a stretch from the middle of each (sampled) member's raw history."""
    if not isinstance(base, NeuralDetector):
        return {}
    members = sorted(e for e, c in registry.entities.items() if c == cluster and e in data)
    rng = np.random.default_rng(cluster)
    picked = rng.choice(members, size=min(len(members), MEMBERS_PER_CLUSTER), replace=False) if members else []
    out = {}
    for entity in sorted(picked):
        series = data[entity]
        start = max(0, (len(series) - MEMBER_POINTS) // 2)
        stretch = series[start:start + MEMBER_POINTS]
        if len(stretch) > base.window:
            out[str(entity)] = diff_score(base, stretch, reference)
    return out


def save_detector(detector: Detector, path: Path) -> None:
    tmp = Path(str(path) + ".tmp")
    torch.save(detector, tmp)
    os.replace(tmp, path)


def load_detector(path: Path) -> Detector:
    """A trainable detector saved by ``fit_per_cluster`` (a trusted file of the model store)."""
    return torch.load(path, weights_only=False)


def load_index(registry_dir: Path) -> BaseIndex:
    path = base_folder(registry_dir) / INDEX_NAME
    try:
        index = json.loads(path.read_text())
        models = {m["cluster"]: BaseModelEntry(**m) for m in index["models"]}
        return BaseIndex(models, float(index["beta"]), index.get("member_diff_scores", {}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"no base models in {path.parent} ({exc}); run `omnistream fit --per-cluster`") from exc
