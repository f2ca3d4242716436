"""A seasonal baseline: each metric's last point against the same phase one period earlier.

Cloud metrics follow daily and weekly cycles; a z-score flags every peak hour. ``seasonal``
finds each metric's period on its training series with the project's own periodicity kernel
(CMND, the cumulative mean normalised difference of YIN, de Cheveigné & Kawahara 2002, also
OmniTransfer's periodic weights, section 4.3.1): the first lag whose CMND falls below
``threshold``, followed down to its local minimum. A periodic metric's reference is the
median of the ``2 * phase_slack + 1`` points around the same phase one period back (a
seasonal-naive forecast); an aperiodic one (no lag below the threshold, a constant or an
unobserved metric), or one whose reference points are all missing, is referenced to its
training mean, so that on data without cycles ``seasonal`` is the z-score. The score is the
residual's absolute value over its training standard deviation.

The window the worker keeps is set by the fit: the longest period found plus the slack.
``fit_series`` finds the periods; ``fit`` on ready windows keeps those it has (none on a new
detector) and learns only the scales.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from pydantic import Field
from torch import nn

from omnistream import kernels
from omnistream.detectors.base import Detector, DetectorConfig, EpochCallback, Trainable, sliding_windows
from omnistream.detectors.zscore import observed_scale

# Window x metrics values above which the longest periods are dropped: a ring buffer of
# float32 snapshots must stay well under Kafka's 1 MB message limit in the changelog.
MAX_WINDOW_VALUES = 120_000


class SeasonalConfig(DetectorConfig):
    window: int = Field(1, ge=1, description="points per window until the fit sets it from the periods found")
    max_period: int = Field(1440, ge=4, description="longest period searched, in points (a day at 1-minute steps)")
    min_period: int = Field(4, ge=2, description="shortest period searched, in points")
    threshold: float = Field(0.3, gt=0, lt=1, description="CMND a lag must fall below to count as a period")
    phase_slack: int = Field(2, ge=0, description="points either side of the same phase in the reference median")
    min_scale: float = Field(1e-6, gt=0, description="scale floor of (near-)constant residuals, in their units")


def find_periods(series: np.ndarray, config: SeasonalConfig) -> np.ndarray:
    """Each metric's period (M,) in points on a training series (T, M); 0 where none."""
    t, m = series.shape
    top = min(config.max_period, t // 3)
    periods = np.zeros(m, dtype=np.int64)
    if top <= config.min_period:
        return periods
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing metric
        fill = np.nan_to_num(np.nanmedian(series, axis=0))
    filled = np.where(np.isnan(series), fill, series).astype(np.float64)
    cmnd = kernels.cmnd(np.ascontiguousarray(filled.T), np.arange(1, top + 1))  # (M, top): lag 1 in column 0
    cmnd = np.where(np.isfinite(cmnd), cmnd, np.inf)  # constant metrics give 0 / 0
    below = cmnd[:, config.min_period - 1:] < config.threshold
    for metric in np.flatnonzero(below.any(axis=1)):
        lag = config.min_period + int(np.argmax(below[metric]))
        while lag < top and cmnd[metric, lag] < cmnd[metric, lag - 1]:  # down to the dip's bottom
            lag += 1
        periods[metric] = lag
    return periods


def reference_offsets(periods: np.ndarray, slack: int) -> np.ndarray:
    """Offsets (M, 2 slack + 1) of each metric's reference points back from the window's last
    point; -1 for an aperiodic metric (referenced to its training mean)."""
    offsets = periods[:, None] + np.arange(-slack, slack + 1)
    return np.where(periods[:, None] > 0, offsets, -1)


class SeasonalResidual(nn.Module):
    """|x_last - median(reference points)| / scale per metric, the training mean standing in
    for an empty reference (missing points are left out of the median; a missing last point
    scores 0)."""

    def __init__(self, offsets: np.ndarray, window: int, center: np.ndarray, scale: np.ndarray):
        super().__init__()
        metrics = offsets.shape[0]
        flat = (window - 1 - offsets) * metrics + np.arange(metrics)[:, None]
        self.register_buffer("index", torch.as_tensor(np.where(offsets >= 0, flat, window * metrics)))
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, w, m = x.shape
        flat = torch.cat([x.reshape(b, w * m), torch.full((b, 1), float("nan"), dtype=x.dtype, device=x.device)], 1)
        reference = torch.nanmedian(flat[:, self.index], dim=2).values  # (B, M)
        reference = torch.where(torch.isnan(reference), self.center, reference)
        return torch.nan_to_num((x[:, -1] - reference) / self.scale, nan=0.0).abs().unsqueeze(1)


class Seasonal(Detector):
    """Residual against the same phase one period back (CMND periods), or the training mean."""

    name = "seasonal"
    config_class = SeasonalConfig
    paper = "seasonal-naive residual with CMND periods (de Cheveigné & Kawahara 2002; OmniTransfer 4.3.1)"

    def __init__(self, config: SeasonalConfig | None = None, **overrides: object):
        super().__init__(config, **overrides)
        self.periods: np.ndarray | None = None
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    @property
    def window(self) -> int:
        """The configured window until periods are found, then the longest period plus the slack."""
        if self.periods is None or not self.periods.any():
            return self.config.window
        return max(self.config.window, int(self.periods.max()) + self.config.phase_slack + 1)

    def fit_series(self, series: np.ndarray, progress: EpochCallback | None = None) -> Seasonal:
        series = np.asarray(series, dtype=np.float32)
        periods = find_periods(series, self.config)
        slack = self.config.phase_slack
        while periods.any() and (periods.max() + slack + 1) * series.shape[1] > MAX_WINDOW_VALUES:
            periods[periods == periods.max()] = 0  # the longest period would overflow the state snapshot
        self.periods = periods
        found = sorted(set(periods[periods > 0].tolist()))
        self.note = (f"periods found for {len(np.flatnonzero(periods))} of {len(periods)} metrics"
                     + (f" ({', '.join(map(str, found))} points)" if found else ""))
        return self.fit(sliding_windows(series, self.window, self.config.train_stride))

    def fit(self, windows: np.ndarray, trainable: Trainable | None = None,
            progress: EpochCallback | None = None) -> Seasonal:
        start = time.perf_counter()
        metrics = np.asarray(windows).shape[-1]
        if self.periods is None or len(self.periods) != metrics:
            self.periods = np.zeros(metrics, dtype=np.int64)  # ready windows: no period search
        windows = self._check_windows(windows)
        offsets = reference_offsets(self.periods, self.config.phase_slack)
        last = windows[:, -1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a metric missing throughout
            center = np.nan_to_num(np.nanmean(last, axis=0))
            # The reference points of every window (N, M, K), gathered without copying the windows.
            gathered = windows[:, self.window - 1 - np.maximum(offsets, 0), np.arange(metrics)[:, None]]
            gathered[:, offsets < 0] = np.nan
            reference = torch.nanmedian(torch.from_numpy(gathered), dim=2).values.numpy()  # the module's median
            residual = last - np.where(np.isnan(reference), center, reference)
            scale = np.nanstd(residual, axis=0)
        self.metrics = metrics
        self.center = center.astype(np.float32)
        self.scale = observed_scale(last, scale, self.config.min_scale)
        self.train_seconds += time.perf_counter() - start
        return self

    def scoring_module(self) -> SeasonalResidual:
        self._require_fitted()
        return SeasonalResidual(reference_offsets(self.periods, self.config.phase_slack), self.window, self.center,
                                self.scale)
