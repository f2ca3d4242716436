"""The ensemble: calibrated members, combined by mean or max, seeds only where a member needs them."""

import numpy as np
import pytest

from omnistream.detectors.base import point_scores
from omnistream.detectors.reduce import reduce_scores
from omnistream.detectors.registry import DetectorError, create, detector_class


def correlated(length: int, seed: int = 0) -> np.ndarray:
    """Three metrics driven by one factor plus noise (T, 3)."""
    rng = np.random.default_rng(seed)
    factor = rng.standard_normal(length)
    return (factor[:, None] * [1.0, 2.0, -1.0] + 0.1 * rng.standard_normal((length, 3))).astype(np.float32)


def test_members_are_calibrated_to_one_at_their_training_quantile():
    train = correlated(1500)
    detector = create("ensemble", members=["zscore", "pca"], quantile=0.99).fit_series(train)
    combined = reduce_scores(point_scores(detector, train), "mean")
    # Each member's reduced score is 1 at its 99th percentile; their mean is near 1 there too.
    assert 0.5 < np.quantile(combined, 0.99) < 1.5
    assert detector.scales[0] != pytest.approx(detector.scales[1], rel=0.1)  # different raw scales


def test_a_broken_correlation_shows_in_the_mean_and_the_max_names_the_metric():
    train, test = correlated(1500), correlated(300, seed=1)
    test[100, 2] = -test[100, 2]  # the third metric leaves the factor, within its own range
    mean = create("ensemble", members=["zscore", "pca"]).fit_series(train)
    worst = create("ensemble", members=["zscore", "pca"], combine="max").fit_series(train)
    scores = reduce_scores(point_scores(mean, test), "mean")
    assert scores[100] > 3 * np.quantile(scores, 0.99)
    per_metric = point_scores(worst, test)[100]
    assert int(np.argmax(per_metric)) == 2


def test_bad_members_are_refused():
    with pytest.raises(DetectorError, match="members repeat"):
        create("ensemble", members=["zscore", "zscore"])
    with pytest.raises(DetectorError, match="system|entity"):
        create("ensemble", members=["topomad"])


def test_seeds_matter_only_with_a_neural_member():
    ensemble = detector_class("ensemble")
    assert not ensemble.stochastic({"members": ["seasonal", "pca"]})
    assert ensemble.stochastic({"members": ["seasonal", "usad"]})
