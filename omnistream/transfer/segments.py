"""From an entity's raw history to the short, comparable segments W-HAC clusters
(OmniTransfer section 4.3.1): fill missing values, z-score, robust baseline, slice.

Everything here works on one entity (T, M) at a time or on a stack of entities, through the
kernel facade, so the offline clustering and the online matching prepare data identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnistream import kernels

MIN_SCALE = 1e-6  # a metric with a smaller standard deviation is constant: it z-scores to 0


def interpolate_missing(series: np.ndarray) -> np.ndarray:
    """Fill NaN along time (T, M) by linear interpolation; an all-missing metric becomes 0."""
    series = np.array(series, dtype=np.float64)
    t = np.arange(series.shape[0])
    for j in np.flatnonzero(np.isnan(series).any(axis=0)):
        column = series[:, j]
        known = ~np.isnan(column)
        series[:, j] = np.interp(t, t[known], column[known]) if known.any() else 0.0
    return series


@dataclass(frozen=True)
class Scaling:
    """Per-metric z-score of one entity: the centre and scale its segments were made with."""

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def of(cls, series: np.ndarray) -> Scaling:
        std = np.nanstd(series, axis=0)
        return cls(np.nan_to_num(np.nanmean(series, axis=0)), np.where(std > MIN_SCALE, std, 1.0))

    def apply(self, series: np.ndarray) -> np.ndarray:
        return (series - self.center) / self.scale


def zscored(series: np.ndarray) -> np.ndarray:
    """Missing values interpolated, then each metric z-scored with the entity's own statistics."""
    filled = interpolate_missing(series)
    return Scaling.of(filled).apply(filled)


def baseline_series(series: np.ndarray, window: int, drop: float) -> np.ndarray:
    """The robust baseline (T, M) of a z-scored series: extremes dropped, moving average."""
    return kernels.baseline(np.ascontiguousarray(series.T), window, drop).T


def slice_segments(series: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping segments (count, M, length) of a series (T, M) and their start indices."""
    count = series.shape[0] // length
    starts = np.arange(count, dtype=np.int64) * length
    segments = series[: count * length].reshape(count, length, series.shape[1]).transpose(0, 2, 1)
    return np.ascontiguousarray(segments), starts
