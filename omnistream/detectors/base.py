"""The contract every detector declares, in the spirit of river's ``AnomalyDetector`` (a high
score is anomalous) and Merlion's ``config_class`` + factory.

A detector is created from its config (``registry.create(name, **config)``), learns from
windows (count, W, M) of one entity or cluster, and scores windows with per-point,
per-metric scores (count, W', M) of the window's last W' <= W points (W' = 1 for models that
score only the last point, e.g. TranAD). What it deploys is ``scoring_module()``: a
TorchScript-able module whose ``forward(x: (B, W, M) float32) -> (B, W', M)`` returns the same
scores from raw values (normalisation baked in) and, where cheaper, ``score_last(x) ->
(B, 1, M)``, the last step's scores alone, which is what a stream scores per point. ``reduction`` says how the
per-metric scores of a point become one score; ``input_kind`` says what the model reads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

# Progress of a training run: (epoch, train loss, validation loss).
EpochCallback = Callable[[int, float, float], None]
# Which parameters (by name) train; the others stay frozen, BatchNorm statistics included.
Trainable = Callable[[str], bool]


class DetectorConfig(BaseModel):
    """Hyper-parameters every detector has. Subclasses document their own, with the paper."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    window: int = Field(64, ge=1, description="points per window the model reads (the last one is scored)")
    train_stride: int = Field(1, ge=1, description="stride between training windows taken from a series")
    seed: int = Field(0, description="seed of every random choice: initial weights, shuffling, sampling")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: object) -> None:
        """A subclass that only changes a default keeps the parent's description."""
        super().__pydantic_init_subclass__(**kwargs)
        for name, field in cls.model_fields.items():
            if not field.description:
                parent = next((b.model_fields[name] for b in cls.__mro__[1:]
                               if name in getattr(b, "model_fields", {})), None)
                field.description = parent.description if parent is not None else None


class Detector(ABC):
    """Fit on windows, score windows per point and metric, export a scoring module."""

    name: ClassVar[str]
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    paper: ClassVar[str] = ""
    # How a point's per-metric scores reduce to one score (see ``reduce``); higher = more anomalous.
    reduction: ClassVar[str] = "mean_sq"
    input_kind: ClassVar[Literal["entity", "system"]] = "entity"

    def __init__(self, config: DetectorConfig | None = None, **overrides: object):
        base = (config if config is not None else self.config_class()).model_dump()
        self.config = self.config_class.model_validate({**base, **overrides})
        self.metrics: int | None = None
        self.train_seconds = 0.0
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        self.note: str | None = None  # what a user of this fit should know, e.g. a documented fallback

    @property
    def window(self) -> int:
        return self.config.window

    @classmethod
    def stochastic(cls, config: dict) -> bool:
        """Whether a fit with ``config`` depends on the seed (then evaluations run several)."""
        return False

    @abstractmethod
    def fit(self, windows: np.ndarray, trainable: Trainable | None = None,
            progress: EpochCallback | None = None) -> Detector:
        """Learn from windows (count, W, M). A fitted detector continues from its weights
        (fine-tuning); ``trainable`` freezes the parameters it rejects (partial transfer)."""

    @abstractmethod
    def scoring_module(self) -> torch.nn.Module:
        """The deployable module: raw windows (B, W, M) -> per-point, per-metric scores."""

    def fit_series(self, series: np.ndarray, progress: EpochCallback | None = None) -> Detector:
        """Fit on the sliding windows of one series (T, M)."""
        return self.fit(sliding_windows(series, self.window, self.config.train_stride), progress=progress)

    @torch.no_grad()
    def score(self, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Per-point, per-metric scores (count, W', M) of windows (count, W, M)."""
        self._require_fitted()
        module = self.scoring_module().eval()
        x = torch.from_numpy(np.require(windows, np.float32, ["C", "W"]))
        return torch.cat([module(part) for part in x.split(batch)]).numpy()

    @torch.no_grad()
    def score_last(self, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Scores (count, M) of each window's last point: what the worker computes per point."""
        self._require_fitted()
        module = self.scoring_module().eval()
        call = getattr(module, "score_last", None) or (lambda part: module(part)[:, -1:])
        x = torch.from_numpy(np.require(windows, np.float32, ["C", "W"]))
        return torch.cat([call(part) for part in x.split(batch)])[:, -1].numpy()

    def layer_groups(self) -> dict[str, list[str]]:
        """Parameter names by group for partial transfer: ``shared`` carries over from a base
        model, ``head`` retrains. Detectors without trained layers have none."""
        return {}

    def _require_fitted(self) -> None:
        if self.metrics is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit() first")

    def _check_windows(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 3 or windows.shape[1] != self.window:
            raise ValueError(f"{self.name} needs windows (count, {self.window}, metrics), got {windows.shape}")
        if len(windows) == 0:
            raise ValueError(f"{self.name} needs at least one training window")
        if self.metrics is not None and windows.shape[2] != self.metrics:
            raise ValueError(f"{self.name} was fitted on {self.metrics} metrics, got {windows.shape[2]}")
        return windows


def sliding_windows(series: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Windows (count, window, M) of a series (T, M) as a read-only strided view."""
    if series.shape[0] < window:
        raise ValueError(f"series of {series.shape[0]} points is shorter than the window {window}")
    view = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)[::stride]
    return view.transpose(0, 2, 1)


def point_scores(detector: Detector, series: np.ndarray, history: np.ndarray | None = None,
                 batch: int = 1024) -> np.ndarray:
    """Per-point (T, M) scores of a series, each point scored as the last of its own window,
    as the worker scores a stream.

    ``history`` (the points just before the series) fills the first window; without it the
    first window-1 points get the score of the first full window.
    """
    w = detector.window
    context = series if history is None or w == 1 else np.concatenate([history[-(w - 1):], series])
    windows = sliding_windows(context, w)
    last = np.concatenate([detector.score_last(windows[i:i + batch]) for i in range(0, len(windows), batch)])
    missing = series.shape[0] - last.shape[0]
    return np.concatenate([np.repeat(last[:1], missing, axis=0), last]) if missing > 0 else last
