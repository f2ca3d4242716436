"""Per-metric z-scores: the honest floor every learned detector must beat.

``zscore``: |x - mean| / std with the mean and standard deviation of the training data.
``mad``: the robust variant, |x - median| / (1.4826 MAD), insensitive to the anomalies a
training history usually contains (Rousseeuw & Croux, JASA 1993). Both score each point on
its own (window 1). ``zscore_centred``: the last point of a window less the window's median,
over the standard deviation of that difference in training: a level that moved is normal again
after half a window (the floor for detectors that centre their windows, such as the system
models with ``centre``). A point's score is the mean of its squared z-scores (``mean_sq``).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from pydantic import Field
from torch import nn

from omnistream.detectors.base import Detector, DetectorConfig, EpochCallback, Trainable
from omnistream.detectors.neural import Standardise


class ZScoreConfig(DetectorConfig):
    window: int = Field(1, ge=1, description="points per window; only the last is scored")
    min_scale: float = Field(1e-6, gt=0, description="scale floor of (near-)constant metrics, in their units")


class AbsZ(nn.Module):
    """|x - center| / scale per metric and point (missing values score 0)."""

    def __init__(self, center: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.standardise = Standardise(center, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardise(x).abs()

    @torch.jit.export
    def score_last(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x[:, -1:])


def observed_scale(points: np.ndarray, scale: np.ndarray, floor: float) -> np.ndarray:
    """Per-metric scales (M,) of training ``points`` (N, M), floored at ``floor``; infinite for a
    metric never observed in training, so that it scores 0: nothing says what is normal for it."""
    return np.where(np.isfinite(points).any(axis=0), np.maximum(np.nan_to_num(scale), floor),
                    np.inf).astype(np.float32)


class ZScore(Detector):
    """Per-metric z-score from the training mean and standard deviation."""

    name = "zscore"
    config_class = ZScoreConfig
    paper = "the classical k-sigma rule"

    def __init__(self, config: ZScoreConfig | None = None, **overrides: object):
        super().__init__(config, **overrides)
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    def _location_scale(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.nanmean(points, axis=0), np.nanstd(points, axis=0)

    def fit(self, windows: np.ndarray, trainable: Trainable | None = None,
            progress: EpochCallback | None = None) -> ZScore:
        start = time.perf_counter()
        windows = self._check_windows(windows)
        points = windows[:, -1]  # each point once (at stride 1)
        center, scale = self._location_scale(points)
        self.metrics = windows.shape[2]
        self.center = np.nan_to_num(center).astype(np.float32)
        self.scale = observed_scale(points, scale, self.config.min_scale)
        self.train_seconds += time.perf_counter() - start
        return self

    def scoring_module(self) -> AbsZ:
        self._require_fitted()
        return AbsZ(self.center, self.scale)


class RobustZScore(ZScore):
    """Per-metric robust z-score from the training median and MAD."""

    name = "mad"
    paper = "Rousseeuw & Croux (1993), the median absolute deviation"

    def _location_scale(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        median = np.nanmedian(points, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(points - median), axis=0)
        # A metric constant for over half the time has MAD 0: fall back to its std.
        return median, np.where(mad > 0, mad, np.nanstd(points, axis=0))


class CentredZScoreConfig(ZScoreConfig):
    window: int = Field(12, ge=2, description="points per window: the last is scored against the window's median")


class CentredAbsZ(nn.Module):
    """|x_last - median(window)| / scale per metric (missing values are left out of the median;
    a missing last point scores 0)."""

    def __init__(self, scale: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        median = torch.nanmedian(x, dim=1, keepdim=True).values
        return torch.nan_to_num((x[:, -1:] - median) / self.scale, nan=0.0).abs()


class CentredZScore(ZScore):
    """Per-metric z-score of the last point against its window's median."""

    name = "zscore_centred"
    config_class = CentredZScoreConfig
    paper = "the k-sigma rule on a rolling median's residual"

    def fit(self, windows: np.ndarray, trainable: Trainable | None = None,
            progress: EpochCallback | None = None) -> CentredZScore:
        start = time.perf_counter()
        windows = self._check_windows(windows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a metric missing throughout a window
            residual = windows[:, -1] - np.nanmedian(windows, axis=1)
            scale = np.nanstd(residual, axis=0)
        self.metrics = windows.shape[2]
        self.center = np.zeros(self.metrics, dtype=np.float32)
        self.scale = np.where(np.isfinite(residual).any(axis=0), np.maximum(np.nan_to_num(scale),
                                                                             self.config.min_scale),
                              np.inf).astype(np.float32)
        self.train_seconds += time.perf_counter() - start
        return self

    def scoring_module(self) -> CentredAbsZ:
        self._require_fitted()
        return CentredAbsZ(self.scale)
