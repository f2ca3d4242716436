"""Fit one detector on an entity's history, calibrate its label-free threshold, export it.

The history is split in time: the older ``1 - calibration_fraction`` trains the detector,
the newest ``calibration_fraction`` is scored as the worker would score it (each point the
last of its own window) and sets the POT threshold (detectors.calibration). Scores of data
the model never trained on are what a threshold must hold against; scores of the training
data itself are optimistic and make a threshold flag far too much.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from omnistream.detectors.base import Detector, EpochCallback, point_scores, sliding_windows
from omnistream.detectors.calibration import Pot, fit_pot, held_out_alarm_rate
from omnistream.detectors.export import ModelInfo, export
from omnistream.detectors.reduce import reduce_scores
from omnistream.detectors.registry import create
from omnistream.offline.checks import cumulative_counters, history_split, screen
from omnistream.offline.datasets import DataError, EntitySeries, LeftOut
from omnistream.offline.parallel import run_all, threads_per_job
from omnistream.stream.config import OPEN_AFTER, ShiftSettings, TriggerSettings

log = logging.getLogger(__name__)


@dataclass
class Calibration:
    """How the label-free threshold is set."""

    risk: float = 1e-2  # POT's q: the share of normal points allowed above the threshold
    level: float = 0.98  # POT's initial quantile
    fraction: float = 0.2  # newest share of the history held out to calibrate on
    depth: int = 0  # DSPOT's moving-mean length (0 = SPOT)
    adapt: bool = True  # SPOT updates the threshold online, as the worker's decide.adapt_threshold
    shift: ShiftSettings = field(default_factory=ShiftSettings)  # the worker's level shifts
    triggers: TriggerSettings = field(default_factory=TriggerSettings)  # when the worker asks for a refit
    refits: bool = True  # the refits it asks for are served (offline.deployed), as the transfer service does
    open_after: int = OPEN_AFTER  # flagged points in a row that open an incident (the worker's decide.open_after)

    def as_dict(self) -> dict:
        return {**self.__dict__, "shift": self.shift.model_dump(), "triggers": self.triggers.model_dump()}


@dataclass
class Fitted:
    detector: Detector
    pot: Pot
    calibration_scores: np.ndarray  # point scores of the held-out newest history

    def held_out_alarms(self) -> float | None:
        """How often its threshold fires on the second half of the held-out history when fitted
        on the first (detectors.calibration.held_out_alarm_rate); None where that is too short."""
        return held_out_alarm_rate(self.calibration_scores, self.pot.q, self.pot.level, self.pot.depth)


def split_history(history: np.ndarray, window: int, calibration: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """(older part to train on, newest ``calibration.fraction`` to calibrate on) of (T, M)."""
    split = history_split(len(history), window, calibration.fraction)
    return history[:split], history[split:]


def calibrate(detector: Detector, train: np.ndarray, held_out: np.ndarray, calibration: Calibration) -> Fitted:
    """POT threshold of a trained detector from its scores of ``held_out`` (which follows ``train``)."""
    scores = reduce_scores(point_scores(detector, held_out, history=train), detector.reduction)
    return Fitted(detector, fit_pot(scores, calibration.risk, calibration.level, calibration.depth), scores)


def fit_entity(detector_name: str, history: np.ndarray, config: dict | None = None,
               calibration: Calibration | None = None, progress: EpochCallback | None = None) -> Fitted:
    """Train ``detector_name`` on the older part of ``history`` (T, M), calibrate on the newest."""
    calibration = calibration or Calibration()
    detector = create(detector_name, **(config or {}))
    counters = cumulative_counters(history)
    if counters.any():
        history = np.where(counters, np.nan, history).astype(np.float32)
    train, held_out = split_history(history, detector.window, calibration)
    detector.fit_series(train, progress=progress)
    if counters.any():
        said = (f"metrics {', '.join(map(str, np.flatnonzero(counters)))} never decrease in training (cumulative "
                "counters): not scored, send their rate")
        detector.note = "; ".join(filter(None, [detector.note, said]))
    return calibrate(detector, train, held_out, calibration)


def model_info(fitted: Fitted, metric_names: list[str], entity: str | None = None,
               cluster: str | None = None, strategy: str = "scratch", **training: object) -> ModelInfo:
    d = fitted.detector
    return ModelInfo(
        name=d.name, version=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), metrics=metric_names, window=d.window,
        threshold=fitted.pot.threshold, entity=entity, cluster=cluster, strategy=strategy, reduction=d.reduction,
        input_kind=d.input_kind, calibration=fitted.pot.to_dict(), config=d.config.model_dump(),
        training={"seconds": round(d.train_seconds, 2), "epochs": len(d.history["val_loss"]),
                  "threshold_rule": f"POT, risk {fitted.pot.q:g}, on the newest held-out history",
                  "held_out_alarms": fitted.held_out_alarms(), **training},
    )


def export_fitted(fitted: Fitted, path: Path, info: ModelInfo, parity_series: np.ndarray) -> str:
    """Export with a parity check on windows of ``parity_series``; return the file's sha256."""
    w = fitted.detector.window
    return export(fitted.detector, info, path, sliding_windows(parity_series[: w + 31], w))


def _fit_and_export(detector_name: str, series: EntitySeries, config: dict, calibration: Calibration,
                    metric_names: list[str], out_dir: Path, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    fitted = fit_entity(detector_name, series.train, config, calibration)
    info = model_info(fitted, metric_names, entity=series.entity)
    path = out_dir / f"{series.entity}.pt"
    sha = export_fitted(fitted, path, info, series.test if len(series.test) else series.train)
    return {"entity": series.entity, "path": str(path), "sha256": sha, "threshold": info.threshold,
            "seconds": info.training["seconds"], "epochs": info.training["epochs"],
            "held_out_alarms": info.training["held_out_alarms"], "risk": calibration.risk}


def fit_dataset(detector_name: str, data: list[EntitySeries], out_dir: Path, config: dict | None = None,
                calibration: Calibration | None = None, jobs: int = 1, console: Console | None = None,
                left_out: list[LeftOut] | None = None) -> tuple[list[dict], list[LeftOut]]:
    """One model per entity, exported to ``out_dir/<entity>.pt`` for the worker: (what was
    exported, the entities left out with their reasons, ``left_out`` first). An entity whose
    data cannot train (offline.checks) or whose fit fails is left out; the others go on."""
    console = console or Console()
    calibration = calibration or Calibration()
    window = create(detector_name, **(config or {})).window  # a bad name or key fails before any work
    data, unusable = screen(data, {detector_name: window}, calibration.fraction, labelled=False)
    left_out = list(left_out or []) + unusable
    for entity in unusable:
        console.print(f"[yellow]{entity.entity}: left out[/]: {entity.reason}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(detector_name, s, config or {}, calibration, s.metrics, out_dir,
              threads_per_job(jobs)) for s in data]
    results = []
    for result in run_all(_attempt_fit, tasks, jobs, f"fitting {detector_name}", console):
        if isinstance(result, LeftOut):
            left_out.append(result)
            console.print(f"[yellow]{result.entity}: left out[/]: {result.reason}")
            continue
        results.append(result)
        alarms = result["held_out_alarms"]
        check = (f", held-out false alarms {alarms:.1%} (q {result['risk']:.1%})" if alarms is not None else
                 ", held-out history too short to check the threshold")
        console.print(f"{result['entity']}: threshold {result['threshold']:.4g}{check}, {result['epochs']} epochs in "
                      f"{result['seconds']:.1f} s -> {result['path']}")
    return results, left_out


def _attempt_fit(detector_name: str, series: EntitySeries, *args: object) -> dict | LeftOut:
    try:
        return _fit_and_export(detector_name, series, *args)
    except DataError as exc:
        return LeftOut(series.entity, str(exc))
    except Exception as exc:  # this entity's failure, with its traceback in the log; the others go on
        log.exception("fitting %s on %s failed", detector_name, series.entity)
        return LeftOut(series.entity, f"{type(exc).__name__}: {exc}", "error")
