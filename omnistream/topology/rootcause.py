"""Root-cause ranking: which entities of a system to look at first, and how well a ranking did.

Rankers order a system's entities by how anomalous each looks just after an onset:
- ``rank_entities``: by any per-entity score (a system model's per-node contributions, or each
  entity's calibrated score from its own model: the fallback every deployment has);
- ``baro_scores``: BARO's rule (Pham et al., FSE 2024, as run by RCAEval, WWW 2025): each metric's
  robust z-score against the median and inter-quartile range of the data before the onset, its
  maximum after the onset, an entity scored by its most anomalous metric.
Figures, per fault: AC@k (the root cause among the first k) and Avg@k (the mean of AC@1..AC@k).
"""

from __future__ import annotations

import warnings

import numpy as np

def rank_entities(scores: np.ndarray, names: list[str]) -> list[tuple[str, float]]:
    """(entity, score) from the most to the least anomalous; NaN last, ties in name order."""
    scores = np.asarray(scores, dtype=float)
    keyed = [(-s if np.isfinite(s) else np.inf, name, float(s)) for name, s in zip(names, scores)]
    return [(name, s) for _, name, s in sorted(keyed)]


def baro_scores(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """BARO's score of each entity (N,) from ``before`` (T0, N, M) and ``after`` (T1, N, M): the
    largest |x - median| / IQR of its metrics after the onset, median and IQR of the data before.
    A metric flat before the onset (IQR 0) is scaled by 1 in its own units, as scikit-learn's
    RobustScaler in RCAEval's BARO does, rather than made infinitely surprising by any change."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # metrics missing throughout
        median = np.nanmedian(before, axis=0)
        q1, q3 = np.nanpercentile(before, [25, 75], axis=0)
        iqr = q3 - q1
        z = np.abs(after - median) / np.where(iqr > 0, iqr, 1.0)
        return np.nan_to_num(np.nanmax(z, axis=(0, 2)), nan=0.0)


def accuracy_at(rankings: list[list[str]], causes: list[str], k: int) -> float:
    """AC@k: the share of faults whose root cause is among the first k entities of its ranking."""
    if not causes:
        return float("nan")
    return float(np.mean([cause in ranking[:k] for ranking, cause in zip(rankings, causes)]))


def average_at(rankings: list[list[str]], causes: list[str], k: int = 5) -> float:
    """Avg@k: the mean of AC@1 .. AC@k."""
    return float(np.mean([accuracy_at(rankings, causes, j) for j in range(1, k + 1)]))
