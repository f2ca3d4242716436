"""An ensemble of registered detectors on calibrated scores, so that no one blind spot decides.

Each member is fitted on the same series and its point scores (its own reduction) are divided
by their ``quantile`` on its training windows, so that 1 means "as high as the member's 1 %
highest on normal data" whatever its scale. ``combine`` takes the mean of those calibrated
scores (every member has a say) or their maximum (any member may raise an alert). The
ensemble reports per-metric contributions whose mean is the combined score: a member's metric
scores for ``mean``, their squares for ``mean_sq``, and the worst metric alone for ``max``, so
an event still names the metrics that drove it. Aggarwal & Sathe, *Outlier Ensembles* (2017),
sections 1.3 and 5.2 (score normalisation and combination).
"""

from __future__ import annotations

import time
import warnings
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from omnistream.detectors.base import Detector, DetectorConfig, EpochCallback, Trainable, point_scores
from omnistream.detectors.reduce import reduce_scores

REDUCTION_CODES = {"mean": 0, "mean_sq": 1, "max": 2}


class EnsembleConfig(DetectorConfig):
    window: int = Field(1, ge=1, description="points per window at least; the members' longest window counts")
    members: list[str] = Field(["seasonal", "pca", "usad"], min_length=1,
                               description="registered entity detectors combined")
    member_configs: dict[str, dict] = Field({}, description="hyper-parameters per member: {name: {key: value}}")
    combine: Literal["mean", "max"] = Field("mean", description="how calibrated member scores combine")
    quantile: float = Field(0.99, gt=0.5, lt=1, description="training-score quantile each member is divided by")

    @field_validator("members")
    @classmethod
    def _known_entity_detectors(cls, members: list[str]) -> list[str]:
        from omnistream.detectors.registry import detector_class

        for name in members:
            if name == "ensemble" or detector_class(name).input_kind != "entity":
                raise ValueError(f"{name} cannot be an ensemble member: members are entity detectors")
        if len(set(members)) != len(members):
            raise ValueError(f"members repeat: {members}")
        return members


class CalibratedEnsemble(nn.Module):
    """Members' last-step metric contributions (B, 1, M), each over its calibration scale,
    combined by mean or max."""

    def __init__(self, members: list[nn.Module], windows: list[int], reductions: list[str], scales: list[float],
                 center: np.ndarray, combine: str):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.windows = windows
        self.reductions = [REDUCTION_CODES[r] for r in reductions]
        self.use_max = combine == "max"
        self.register_buffer("scales", torch.as_tensor(scales, dtype=torch.float32))
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, m = x.shape[1], x.shape[2]
        parts: list[torch.Tensor] = []
        i = 0
        for member in self.members:
            s = member(x[:, w - self.windows[i]:])[:, -1]  # (B, M)
            code = self.reductions[i]
            if code == 1:
                s = s * s
            elif code == 2:
                s = torch.zeros_like(s).scatter(1, s.argmax(dim=1, keepdim=True), m * s.amax(dim=1, keepdim=True))
            parts.append(s / self.scales[i])
            i += 1
        stacked = torch.stack(parts)  # (K, B, M)
        if self.use_max:
            pick = stacked.mean(dim=2).argmax(dim=0)  # (B,) the member most alarmed per window
            combined = stacked.gather(0, pick.view(1, -1, 1).expand(1, stacked.shape[1], m))[0]
        else:
            combined = stacked.mean(dim=0)
        return combined.unsqueeze(1)


class Ensemble(Detector):
    """Mean (or max) of registered detectors' calibrated scores."""

    name = "ensemble"
    config_class = EnsembleConfig
    paper = "Aggarwal & Sathe, Outlier Ensembles (2017): normalised score averaging"
    reduction = "mean"

    def __init__(self, config: EnsembleConfig | None = None, **overrides: object):
        super().__init__(config, **overrides)
        from omnistream.detectors.registry import create

        self.members = [create(name, **{"seed": self.config.seed, **self.config.member_configs.get(name, {})})
                        for name in self.config.members]
        self.scales: list[float] | None = None
        self.center: np.ndarray | None = None

    @classmethod
    def stochastic(cls, config: dict) -> bool:
        from omnistream.detectors.registry import detector_class

        settings = cls.config_class.model_validate(config)
        return any(detector_class(name).stochastic(settings.member_configs.get(name, {}))
                   for name in settings.members)

    @property
    def window(self) -> int:
        return max([self.config.window] + [member.window for member in self.members])

    def fit_series(self, series: np.ndarray, progress: EpochCallback | None = None) -> Ensemble:
        start = time.perf_counter()
        for member in self.members:
            member.fit_series(series, progress=progress)
        return self._calibrate(np.asarray(series, dtype=np.float32), start)

    def fit(self, windows: np.ndarray, trainable: Trainable | None = None,
            progress: EpochCallback | None = None) -> Ensemble:
        start = time.perf_counter()
        windows = self._check_windows(windows)
        for member in self.members:
            member.fit(windows[:, windows.shape[1] - member.window:], progress=progress)
        # The windows' last points, then the first window's earlier ones: a series to calibrate on.
        series = np.concatenate([windows[0, :-1], windows[:, -1]])
        return self._calibrate(series, start)

    def _calibrate(self, series: np.ndarray, start: float) -> Ensemble:
        scales = []
        for member in self.members:
            scores = reduce_scores(point_scores(member, series), member.reduction)[member.window - 1:]
            scale = float(np.quantile(scores, self.config.quantile)) if len(scores) else 0.0
            scales.append(scale if np.isfinite(scale) and scale > 0 else 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a metric missing throughout
            self.center = np.nan_to_num(np.nanmean(series, axis=0)).astype(np.float32)
        self.scales = scales
        self.metrics = series.shape[1]
        notes = [f"{m.name}: {m.note}" for m in self.members if m.note]
        self.note = "; ".join(notes) or None
        self.train_seconds += time.perf_counter() - start
        return self

    def scoring_module(self) -> CalibratedEnsemble:
        self._require_fitted()
        return CalibratedEnsemble([m.scoring_module() for m in self.members], [m.window for m in self.members],
                                  [m.reduction for m in self.members], self.scales, self.center, self.config.combine)
