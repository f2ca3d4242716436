"""DiffScore (OmniTransfer eq. 10): how foreign an entity's data is to a base model.

The base model scores the entity's data z-scored with the entity's own statistics (the space
base models are trained in); the mean of the scores without the top 5 % (anomalies and noise
left out; a mean, so that it does not grow with the amount of data) is divided by the same
figure on held-out segments of the base model's own cluster. 1 means "as familiar as its own
cluster", whatever the detector's score scale.
"""

from __future__ import annotations

import numpy as np

from omnistream.detectors.base import Detector, point_scores
from omnistream.detectors.neural import NeuralDetector
from omnistream.detectors.reduce import reduce_scores
from omnistream.transfer.segments import Scaling, interpolate_missing

TRIM = 0.05  # share of the highest scores left out (eq. 10)


def trimmed_mean(scores: np.ndarray, trim: float = TRIM) -> float:
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    keep = max(1, int(np.ceil(len(scores) * (1 - trim))))
    return float(scores[:keep].mean())


def target_scaling(series: np.ndarray) -> Scaling:
    return Scaling.of(interpolate_missing(series))


def diff_score(base: Detector, series: np.ndarray, reference: float) -> float:
    """The base model's trimmed mean score on raw ``series`` (T, M) over ``reference``."""
    if not isinstance(base, NeuralDetector):
        raise TypeError(f"{base.name} has no trained layers to transfer")
    scaling = target_scaling(series)
    scores = reduce_scores(point_scores(base.rebased(scaling.center, scaling.scale), series), base.reduction)
    return trimmed_mean(scores) / max(reference, 1e-12)
