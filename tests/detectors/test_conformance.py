"""Every registered detector passes the conformance suite (detectors.check)."""

import pytest

from omnistream.detectors.check import check_detector
from omnistream.detectors.registry import names

# Small settings so that each detector trains in seconds on the synthetic data.
SMALL = {
    "dcvae": dict(window=16, channels=8, dilations=[1, 2, 4], epochs=3, batch_size=64),
    "usad": dict(window=5, latent=8, epochs=5, batch_size=64),
    "tranad": dict(window=8, epochs=3, batch_size=64),
    # forgets a level shift after half a window by design: over twice the check's 30-point shift
    "zscore_centred": dict(window=64),
    "omnianomaly": dict(window=16, hidden=16, latent=3, flows=2, epochs=3, batch_size=64),
    # a system of 3 nodes (a chain of calls), 2 metrics each
    "topomad": dict(metrics=6, nodes=3, adjacency=[[0, 1, 0], [0, 0, 1], [0, 0, 0]], window=8, hidden=8, epochs=3,
                    batch_size=64),
    "ensemble": dict(members=["seasonal", "pca", "usad"],
                     member_configs={"usad": dict(window=5, latent=8, epochs=5, batch_size=64)}),
    "stdrift": dict(metrics=6, nodes=3, adjacency=[[0, 1, 0], [0, 0, 1], [0, 0, 0]], window=8, dim=8, epochs=5,
                    batch_size=64),
}


def test_every_detector_is_covered():
    assert set(SMALL) <= set(names())


@pytest.mark.parametrize("name", names())
def test_detector_conforms(name):
    check_detector(name, **SMALL.get(name, {}))


def test_usad_with_the_papers_squared_residual_conforms_and_squares_the_root():
    import numpy as np

    from omnistream.detectors.base import point_scores
    from omnistream.detectors.registry import create

    check_detector("usad", residual="square", **SMALL["usad"])
    series = np.random.default_rng(0).normal(size=(400, 3)).astype(np.float32)
    root, square = (create("usad", residual=r, seed=1, **SMALL["usad"]) for r in ("root", "square"))
    for d in (root, square):
        d.fit_series(series[:300])
    assert np.allclose(point_scores(root, series[300:], history=series[:300]) ** 2,
                       point_scores(square, series[300:], history=series[:300]), rtol=1e-4, atol=1e-6)
