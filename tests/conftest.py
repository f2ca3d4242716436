"""Shared test set-up: tests/ on sys.path for the plain references, and small real models
trained on real ASD data (a couple of epochs: real weights, real TorchScript files)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

TEST_ENTITIES = ["omi-1", "omi-2"]


@pytest.fixture(scope="session")
def asd_series():
    from omnistream.offline.datasets import load_asd

    return {s.entity: s for s in load_asd(TEST_ENTITIES)}


@pytest.fixture(scope="session")
def asd_fitted(asd_series):
    """{entity: Fitted} of TEST_ENTITIES: DC-VAE, window 32, two epochs."""
    from omnistream.offline.fit import fit_entity

    config = dict(window=32, channels=16, dilations=[1, 2, 4, 8], epochs=2, batch_size=64, learning_rate=1e-3,
                  train_stride=4)
    return {name: fit_entity("dcvae", series.train, config) for name, series in asd_series.items()}


@pytest.fixture(scope="session")
def trained_models(asd_series, asd_fitted, tmp_path_factory):
    """(model folder, {entity: detector}) for TEST_ENTITIES, window 32, two epochs."""
    from omnistream.offline.datasets import metric_names
    from omnistream.offline.fit import export_fitted, model_info

    folder = tmp_path_factory.mktemp("models")
    detectors = {}
    for name, series in asd_series.items():
        fitted = asd_fitted[name]
        info = model_info(fitted, metric_names(series.train.shape[1]), entity=name)
        export_fitted(fitted, folder / f"{name}.pt", info, series.test)
        detectors[name] = fitted.detector
    return folder, detectors
