"""DC-VAE on real ASD data: causality, learning, TorchScript parity, layer groups."""

import numpy as np
import pytest
import torch

from omnistream.detectors.dcvae import DCVAE, DCVAEConfig
from omnistream.detectors.base import ModelInfo, export, load, optimise_for_inference, sliding_windows


def test_scores_are_causal():
    detector = DCVAE(5, DCVAEConfig(window=16, channels=8, dilations=[1, 2, 4]))
    x = np.random.default_rng(0).standard_normal((2, 16, 5)).astype(np.float32)
    changed = x.copy()
    changed[:, 10:] += 5.0
    a, b = detector.score(x), detector.score(changed)
    np.testing.assert_allclose(a[:, :10], b[:, :10], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[:, 10:], b[:, 10:])


def test_training_lowers_the_loss_and_export_matches(trained_models, asd_series, tmp_path):
    _, detectors = trained_models
    detector = detectors["omi-1"]
    assert detector.history["val_loss"][-1] < detector.history["val_loss"][0]
    windows = sliding_windows(asd_series["omi-1"].test[:80], detector.window)
    info = ModelInfo(name="dcvae", version="t", metrics=[f"m{i}" for i in range(19)], window=detector.window,
                     threshold=1.0)
    sha = export(detector, info, tmp_path / "m.pt", windows)
    module, loaded_info = load(tmp_path / "m.pt")
    assert loaded_info == info and len(sha) == 64
    x = torch.from_numpy(np.ascontiguousarray(windows))
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), detector.score(windows), rtol=1e-5, atol=1e-5)
        fast = optimise_for_inference(module)  # frozen, batch norm folded: what the worker runs
        np.testing.assert_allclose(fast.score_last(x).numpy(), detector.score(windows)[:, -1:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dilations", [[1, 2, 4, 8, 16, 32], [1, 3], [2, 5, 1]])
def test_last_step_equals_the_full_window(dilations):
    """The cone of the last step: only the decoder outputs it reads are computed."""
    detector = DCVAE(4, DCVAEConfig(window=24, channels=6, dilations=dilations))
    for module in detector.net.modules():  # non-trivial batch norm statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 24, 4)).astype(np.float32))
    scoring = detector.scoring_module()
    with torch.no_grad():
        torch.testing.assert_close(scoring.score_last(x), scoring(x)[:, -1:], rtol=1e-5, atol=1e-5)


def test_labelled_anomalies_rank_above_normal_points(trained_models, asd_series):
    from omnistream.detectors.base import point_scores
    from omnistream.offline.metrics import best_f1
    from omnistream.detectors.reduce import reduce_scores

    _, detectors = trained_models
    series = asd_series["omi-1"]
    scores = reduce_scores(point_scores(detectors["omi-1"], series.test, history=series.train))
    flag_everything = 2 * series.labels.mean() / (1 + series.labels.mean())  # F1 of calling every point anomalous
    plain, adjusted = best_f1(scores, series.labels), best_f1(scores, series.labels, point_adjust=True)
    assert plain.f1 > flag_everything and adjusted.f1 > 0.8, (plain, adjusted)


def test_partial_transfer_freezes_the_shared_layers(asd_series):
    detector = DCVAE(19, DCVAEConfig(window=16, channels=8, dilations=[1, 2], epochs=1))
    detector.set_normalisation(asd_series["omi-2"].train)
    groups = detector.transferable_layers()
    assert groups["shared"] and groups["head"]
    before = {n: p.detach().clone() for n, p in detector.net.named_parameters()}
    shared = set(groups["shared"])
    detector.fit(sliding_windows(asd_series["omi-2"].train[:600], 16), trainable=lambda n: n not in shared)
    after = dict(detector.net.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in shared)
    assert any(not torch.equal(before[n], after[n]) for n in groups["head"])


def test_export_refuses_a_model_that_does_not_match(tmp_path, asd_series):
    detector = DCVAE(19, DCVAEConfig(window=16, channels=8, dilations=[1, 2]))
    windows = sliding_windows(asd_series["omi-2"].test[:40], 16)
    original = detector.score

    detector.score = lambda w: original(w) + 1.0  # what the exported file computes no longer matches
    info = ModelInfo(name="dcvae", version="t", metrics=[], window=16, threshold=1.0)
    with pytest.raises(RuntimeError, match="parity"):
        export(detector, info, tmp_path / "m.pt", windows)
    assert not (tmp_path / "m.pt").exists()
