"""From per-point, per-metric detector scores (..., M) to one score per point.

Each exported model names its reduction (``ModelInfo.reduction``); the worker and the
evaluation apply the same function, so the threshold is always on the same scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

REDUCERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # energy of standardised residuals: every metric contributes (z-score, PCA, reconstruction errors)
    "mean_sq": lambda z: (z**2).mean(axis=-1),
    # the worst metric decides: the alpha-sigma rule with per-metric alphas folded into the scores
    "max": lambda z: z.max(axis=-1),
    # scores that are already energies or likelihoods per metric (e.g. negative log-likelihood)
    "mean": lambda z: z.mean(axis=-1),
}


def node_scores(per_metric: np.ndarray, nodes: int, how: str) -> np.ndarray:
    """(..., N x M) node-major per-metric scores of a system window -> (..., N), each node's
    metrics reduced as the model reduces a point."""
    return reduce_scores(per_metric.reshape(*per_metric.shape[:-1], nodes, -1), how)


def reduce_scores(per_metric: np.ndarray, how: str = "mean_sq") -> np.ndarray:
    if how not in REDUCERS:
        raise ValueError(f"unknown score reduction {how!r}; choose one of {sorted(REDUCERS)}")
    return REDUCERS[how](per_metric)
