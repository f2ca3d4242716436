"""The new normal: recognising that an entity's level moved, and re-baselining it.

Under a fixed model an entity whose level moves (a deploy, a migration, a new load pattern)
stays anomalous for good: SPOT (detectors.calibration) leaves flagged points out of its tail,
so the threshold never follows, and every point alerts. A level shift is recognised when, over
a block of ``persist_seconds`` of the entity's own data, at least ``share`` of its points are
flagged. The entity is then re-baselined: its inputs are offset by how far its level moved (the
per-metric median of the window at the shift less the model's training centre, so the model
sees its old level again), its threshold starts again from the model file's, and a refit is
asked for. Blocks follow one another (a shift is found between one and two blocks after it
happened); everything is a function of the data's timestamps, so a replay finds the same shifts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShiftWatch:
    persist_seconds: float  # 0: off
    share: float

    def observe(self, state: dict, ts: float, flagged: bool) -> bool:
        """One decided point of the entity whose shift state is ``state`` (a plain dict, kept in
        its window state): True when it closes a block that was mostly flagged."""
        if self.persist_seconds <= 0:
            return False
        block = state.get("block")  # [first ts, points, flagged points]
        if block is None:
            block = state["block"] = [ts, 0, 0]
        block[1] += 1
        block[2] += int(flagged)
        if ts - block[0] < self.persist_seconds:
            return False
        state["block"] = None
        return block[2] >= self.share * block[1]


def level_offset(window: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(M,) what to subtract from an entity's raw values so that the model sees its training
    level: the per-metric median of ``window`` (W, M) less ``center``; 0 for a metric missing
    throughout the window."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric missing throughout
        median = np.nanmedian(np.asarray(window, dtype=np.float64), axis=0)
    return np.nan_to_num(median - center, nan=0.0).astype(np.float32)
