"""PCA reconstruction error: the linear baseline that many deep detectors fail to beat
without point-adjust (Kim et al., "Towards a Rigorous Evaluation of Time-Series Anomaly
Detection", AAAI 2022, the "PCA error" baseline).

Metrics are standardised with the training mean and std; the principal subspace keeps the
components that explain ``variance`` of the training variance, and always leaves at least one
direction out: a subspace holding every metric would leave no residual, and scores that are 0
everywhere rank nothing (they would score exactly like flagging every point). A point's
per-metric score is its residual outside that subspace, the point score the mean of their
squares. With one metric the subspace is empty and the residual is the standardised value
itself: PCA is then the z-score, and says so in its ``note``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import Field
from torch import nn

from omnistream.detectors.base import Detector, DetectorConfig, EpochCallback, Trainable
from omnistream.detectors.neural import Standardise, standardisation


class PCAConfig(DetectorConfig):
    window: int = Field(1, ge=1, description="points per window; only the last is scored")
    variance: float = Field(0.9, gt=0, lt=1, description="share of the training variance the subspace keeps")


class Residual(nn.Module):
    """|xn - xn V V^T| per metric, xn the standardised point."""

    def __init__(self, standardise: Standardise, components: np.ndarray):
        super().__init__()
        self.standardise = standardise
        self.register_buffer("components", torch.as_tensor(components, dtype=torch.float32))  # (M, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.standardise(x)
        return (xn - (xn @ self.components) @ self.components.T).abs()

    @torch.jit.export
    def score_last(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x[:, -1:])


class PCA(Detector):
    name = "pca"
    config_class = PCAConfig
    paper = "Kim et al. (AAAI 2022), PCA reconstruction error"

    def __init__(self, config: PCAConfig | None = None, **overrides: object):
        super().__init__(config, **overrides)
        self.standardise: Standardise | None = None
        self.components: np.ndarray | None = None

    def fit(self, windows: np.ndarray, trainable: Trainable | None = None,
            progress: EpochCallback | None = None) -> PCA:
        start = time.perf_counter()
        windows = self._check_windows(windows)
        points = windows[:, -1:]
        self.standardise = Standardise(*standardisation(points))
        with torch.no_grad():
            xn = self.standardise(torch.from_numpy(np.require(points[:, 0], np.float32, ["C", "W"]))).double().numpy()
        _, s, vt = np.linalg.svd(xn - xn.mean(axis=0), full_matrices=False)
        explained = np.cumsum(s**2) / max(float((s**2).sum()), 1e-12)
        self.metrics = windows.shape[2]
        k = min(int(np.searchsorted(explained, self.config.variance) + 1), self.metrics - 1)
        if k == 0:
            self.note = "one metric: no principal subspace to leave, so PCA scores are the z-score"
        self.components = vt[:k].T.astype(np.float32)
        self.train_seconds += time.perf_counter() - start
        return self

    def scoring_module(self) -> Residual:
        self._require_fitted()
        return Residual(self.standardise, self.components)
