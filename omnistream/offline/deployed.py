"""The test split decided as the worker decides it, so that a deployed figure is what the worker
would really have sent: SPOT on each point's score; level shifts (detectors.shift) with what
they do at once (the inputs offset to the model's level, the threshold from the model file
again); and, with ``refit``, the new models a deployment's transfer service would serve for the
requests the worker makes: a shift's, and the drift trigger's (a block of ``drift_points``
points with more than ``drift_share`` of them at calibrated score >= 1), one per model version.
The service trains on ``refit_points`` points from where the request's data begins, so the new
model scores from the point after them; here ``refit`` trains it on those points (from scratch,
where the service fine-tunes a cluster's model)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from omnistream.detectors.base import Detector, point_scores
from omnistream.detectors.calibration import Pot
from omnistream.detectors.reduce import reduce_scores
from omnistream.detectors.shift import ShiftWatch, level_offset
from omnistream.stream.config import ShiftSettings, TriggerSettings
from omnistream.stream.scorer import module_center

REFIT_POINTS = 1440  # the transfer service's transfer.points
# data (T, M) -> a fitted model and its threshold, or None where the data cannot train one (the
# entity keeps its model, as when the service fails a request)
Refit = Callable[[np.ndarray], tuple[Detector, Pot] | None]


@dataclass
class Deployed:
    scores: np.ndarray  # (T,) point scores, as scored (after any offset)
    flags: np.ndarray  # (T,) the worker's decisions
    thresholds: np.ndarray  # (T,) the threshold in force at each point
    shifts: list[int] = field(default_factory=list)  # points at which a level shift was recognised
    refits: list[int] = field(default_factory=list)  # points from which a refitted model scored
    refit_seconds: float = 0.0
    per_metric: np.ndarray | None = None  # (T, M) float32 per-metric scores, where asked for


@dataclass
class _Serving:
    """The model in force and what the worker holds for it."""

    detector: Detector
    pot: Pot  # the model file's threshold state
    held: Pot  # SPOT's, as it went on
    center: np.ndarray | None
    offset: np.ndarray | float = 0.0
    requested: bool = False  # a refit asked for this model version (one at a time)
    block: list[int] = field(default_factory=lambda: [0, 0, 0])  # drift trigger: first point, points, flagged

    @classmethod
    def of(cls, detector: Detector, pot: Pot, first: int) -> _Serving:
        return cls(detector, pot, Pot.from_dict(pot.to_dict()), module_center(detector.scoring_module()),
                   block=[first, 0, 0])


def deployed_decisions(detector: Detector, pot: Pot, train: np.ndarray, test: np.ndarray, step_seconds: float,
                       shift: ShiftSettings, adapt: bool = True, per_metric: bool = False,
                       refit: Refit | None = None, triggers: TriggerSettings | None = None,
                       refit_points: int = REFIT_POINTS) -> Deployed:
    """Score and decide ``test`` point by point after ``train``, as the worker would from ``pot``
    (the model file's threshold state, not changed here); ``per_metric`` keeps the per-metric
    scores too (a system's, to rank its nodes)."""
    n, triggers = len(test), triggers or TriggerSettings()
    watch, block_points = ShiftWatch(shift.persist_seconds, shift.share), round(shift.persist_seconds / step_seconds)
    out = Deployed(np.empty(n), np.zeros(n, dtype=bool), np.empty(n),
                   per_metric=np.empty(test.shape, dtype=np.float32) if per_metric else None)
    raw = np.concatenate([train, test])
    now, state, start, switch = _Serving.of(detector, pot, 0), {}, 0, n

    def request(first: int, i: int) -> int:
        """A refit asked for at point ``i`` on the data from ``first``: where it will be served."""
        if refit is None or now.requested or first < 0:
            return switch
        now.requested = True
        return max(i + 1, first + refit_points)

    while start < n:
        metrics = point_scores(now.detector, test[start:] - now.offset, history=raw[:len(train) + start] - now.offset)
        if out.per_metric is not None:
            out.per_metric[start:] = metrics
        scores = reduce_scores(metrics, now.detector.reduction)
        for k, score in enumerate(scores.tolist()):
            i = start + k
            if i == switch:
                switch = n
                began = time.perf_counter()
                fitted = refit(test[max(0, i - refit_points):i])
                out.refit_seconds += time.perf_counter() - began
                if fitted is not None:  # the new model scores from here on
                    now, start = _Serving.of(*fitted, i), i
                    out.refits.append(i)
                    break
            held = now.held
            out.scores[i], out.thresholds[i] = score, held.threshold
            calibrated = float(held.calibrated(score))
            out.flags[i] = held.update(score) if adapt else score >= held.threshold
            if watch.observe(state, i * step_seconds, bool(out.flags[i])):
                out.shifts.append(i)
                if now.center is not None:
                    end = len(train) + i + 1
                    now.offset = level_offset(raw[max(0, end - now.detector.window):end], now.center)
                now.held, start = Pot.from_dict(now.pot.to_dict()), i + 1
                switch = request(i - block_points, i)
                break
            now.block[1] += 1
            now.block[2] += int(calibrated >= 1.0)
            if now.block[1] >= triggers.drift_points:
                first, share = now.block[0], now.block[2] / now.block[1]
                now.block = [i, 0, 0]
                if share > triggers.drift_share and triggers.drift_share < 1:
                    switch = request(first, i)
        else:
            start = n
    return out
