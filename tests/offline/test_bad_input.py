"""Entities whose training data is awkward (a constant metric, mostly missing points, small
integer counts, a handful of huge spikes, a cumulative counter) are scored without flooding at
the deployed threshold."""

import numpy as np
import pytest

from omnistream.offline.datasets import EntitySeries
from omnistream.offline.evaluate import run_one
from omnistream.offline.fit import Calibration

TRAIN, TEST = 1500, 600


def awkward(kind: str) -> EntitySeries:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(TRAIN + TEST, 3))
    if kind == "constant":
        x[:, 0] = 5.0
    elif kind == "mostly missing":
        x[rng.random(x.shape) < 0.9] = np.nan
    elif kind == "integer counts":
        x = rng.poisson(0.3, size=x.shape).astype(float)
    elif kind == "training spikes":
        x[rng.choice(TRAIN, 5, replace=False)] = 1e6
    elif kind == "cumulative counter":
        x[:, 0] = np.cumsum(rng.poisson(3, len(x)))  # e.g. requests served since start: beyond training ever after
    return EntitySeries(kind, x[:TRAIN].astype(np.float32), x[TRAIN:].astype(np.float32), np.zeros(TEST, np.int8))


@pytest.mark.parametrize("kind", ["constant", "mostly missing", "integer counts", "training spikes",
                                  "cumulative counter"])
@pytest.mark.parametrize("detector", ["zscore", "seasonal", "pca"])
def test_awkward_training_data_never_floods(kind, detector):
    run = run_one(detector, 0, awkward(kind), {}, Calibration(), 1)
    assert np.isfinite(run.scores).all()
    assert run.flags.mean() < 0.05  # nothing changed after training: a few percent at most


def test_a_cumulative_counter_is_reported_not_scored():
    run = run_one("zscore", 0, awkward("cumulative counter"), {}, Calibration(), 1)
    assert "metrics 0 never decrease" in run.note
    noise = run_one("zscore", 0, awkward("integer counts"), {}, Calibration(), 1)
    assert noise.note is None  # counts that go up and down are levels, scored as such
