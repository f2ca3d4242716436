"""From per-point, per-metric detector scores (T, M) to one score per point."""

from __future__ import annotations

import numpy as np

REDUCERS = {
    # alpha-sigma rule with one alpha for all metrics: the worst metric decides
    "max": lambda z: z.max(axis=-1),
    # energy of the standardised residual: every metric contributes
    "mean_sq": lambda z: (z**2).mean(axis=-1),
}


def reduce_scores(per_metric: np.ndarray, how: str = "mean_sq") -> np.ndarray:
    if how not in REDUCERS:
        raise ValueError(f"unknown score reduction {how!r}; choose one of {sorted(REDUCERS)}")
    return REDUCERS[how](per_metric)


def alpha_thresholds(per_metric: np.ndarray, quantile: float = 0.999) -> np.ndarray:
    """Per-metric alpha for the alpha-sigma rule from training scores (no labels used)."""
    return np.quantile(per_metric.reshape(-1, per_metric.shape[-1]), quantile, axis=0)
