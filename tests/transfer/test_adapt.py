"""Base models per cluster and the adaptive transfer on a synthetic fleet: real training,
real TorchScript files, DiffScore that tells a cluster's own entities from strangers."""

import numpy as np
import pytest
import torch
from fleets import METRICS, SMALL_DCVAE, clustered_fleet

from omnistream.detectors.base import point_scores
from omnistream.detectors.export import load, sha256_file
from omnistream.detectors.reduce import reduce_scores
from omnistream.detectors.registry import create
from omnistream.transfer.adapt import cold_start, transfer
from omnistream.transfer.base_models import base_folder, load_detector, load_index
from omnistream.transfer.config import TransferConfig
from omnistream.transfer.diffscore import diff_score
from omnistream.transfer.registry import ClusterRegistry
from omnistream.transfer.segments import Scaling

FAST = TransferConfig(full_epochs=2, head_epochs=2, all_epochs=1)


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clusters")
    x = clustered_fleet(folder, 30, 3, seed=2)
    registry = ClusterRegistry.load(folder)
    newcomers = [(x[i], registry.nearest_cluster(x[i][:240])[0]) for i in range(30, 33)]
    return folder, registry, load_index(folder).models, newcomers


def test_base_models_carry_their_cluster(clustered):
    folder, registry, index, _ = clustered
    assert sorted(index) == list(range(registry.count))
    for c, entry in index.items():
        path = base_folder(folder) / entry.model
        _, info = load(path)
        assert info.cluster == str(c) and info.strategy == "base" and info.calibration
        assert sha256_file(path) == entry.sha256 and entry.reference > 0
        assert load_detector(base_folder(folder) / entry.checkpoint).metrics == len(METRICS)


def test_label_free_beta_comes_from_the_members_diff_scores(clustered):
    folder, registry, _, _ = clustered
    index = load_index(folder)
    assert set(index.member_diff_scores) <= set(registry.entities) and len(index.member_diff_scores) >= 10
    assert index.beta == pytest.approx(np.quantile(list(index.member_diff_scores.values()), 0.75))
    assert index.resolve(FAST).beta == index.beta and index.resolve(FAST.model_copy(update={"beta": 2.0})).beta == 2.0


def test_diff_score_is_lowest_for_the_entity_s_own_cluster(clustered):
    folder, registry, index, newcomers = clustered
    for series, own in newcomers:
        scores = {c: diff_score(load_detector(base_folder(folder) / e.checkpoint), series[:400], e.reference)
                  for c, e in index.items()}
        assert min(scores, key=scores.get) == own, scores


def test_partial_transfer_starts_from_the_shared_layers_only(clustered):
    folder, _, index, _ = clustered
    base = load_detector(base_folder(folder) / index[0].checkpoint)
    target = create("dcvae", **{**SMALL_DCVAE, "seed": 7})
    shared = target.adopt_layers(base)
    base_state, state = base.net.state_dict(), target.net.state_dict()
    assert shared and all(torch.equal(state[n], base_state[n]) for n in shared)
    head = [n for n, _ in target.net.named_parameters() if n not in shared]
    assert head and any(not torch.equal(state[n], base_state[n]) for n in head)


def test_transfer_strategies(clustered):
    folder, _, index, newcomers = clustered
    series, cluster = newcomers[0]
    base = load_detector(base_folder(folder) / index[cluster].checkpoint)
    before = {k: v.clone() for k, v in base.net.state_dict().items()}
    full = transfer(base, index[cluster].reference, series[:500], FAST.model_copy(update={"beta": 1e9}))
    partial = transfer(base, index[cluster].reference, series[:500], FAST.model_copy(update={"beta": 1e-9}))
    assert (full.strategy, partial.strategy) == ("full", "partial")
    assert full.diff_score == pytest.approx(partial.diff_score)
    for result in (full, partial):
        assert np.isfinite(result.fitted.pot.threshold) and result.cpu_seconds > 0
        assert result.fitted.detector.score(np.zeros((2, 16, 4), np.float32)).shape == (2, 16, 4)
    assert all(torch.equal(before[k], v) for k, v in base.net.state_dict().items())  # the base model is untouched


def test_cold_start_scores_raw_data_as_the_base_model_scores_it_z_scored(clustered):
    folder, _, index, newcomers = clustered
    series, cluster = newcomers[1]
    base = load_detector(base_folder(folder) / index[cluster].checkpoint)
    _, info = load(base_folder(folder) / index[cluster].model)
    first = series[:64]
    fitted = cold_start(base, info.calibration, first)
    zscored = Scaling.of(first).apply(series[64:200])
    raw_scores = reduce_scores(point_scores(fitted.detector, series[64:200]), base.reduction)
    z_scores = reduce_scores(point_scores(base, zscored.astype(np.float32)), base.reduction)
    np.testing.assert_allclose(raw_scores, z_scores, rtol=1e-3, atol=1e-4)
    assert fitted.pot.threshold == pytest.approx(info.threshold)


def test_detectors_without_layers_are_refitted(clustered):
    _, _, _, newcomers = clustered
    series, _ = newcomers[2]
    base = create("zscore")
    base.fit_series(series[:200])
    result = transfer(base, 1.0, series[200:600])
    assert result.strategy == "refit" and result.diff_score is None
