"""DC-VAE on real ASD data: learning, the alpha-sigma rule, TorchScript parity, last-step cone."""

import numpy as np
import pytest
import torch

from omnistream.detectors.base import point_scores, sliding_windows
from omnistream.detectors.dcvae import DCVAE
from omnistream.detectors.export import ModelInfo, export, load, optimise_for_inference
from omnistream.detectors.reduce import reduce_scores
from omnistream.offline.metrics import best_f1


def test_training_lowers_the_loss_and_export_matches(trained_models, asd_series, tmp_path):
    _, detectors = trained_models
    detector = detectors["omi-1"]
    assert detector.history["val_loss"][-1] < detector.history["val_loss"][0]
    windows = sliding_windows(asd_series["omi-1"].test[:80], detector.window)
    info = ModelInfo(name="dcvae", version="t", metrics=[f"m{i}" for i in range(19)], window=detector.window,
                     threshold=1.0, reduction="max")
    sha = export(detector, info, tmp_path / "m.pt", windows)
    module, loaded_info = load(tmp_path / "m.pt")
    assert loaded_info == info and len(sha) == 64
    x = torch.from_numpy(np.ascontiguousarray(windows))
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), detector.score(windows), rtol=1e-5, atol=1e-5)
        fast = optimise_for_inference(module)  # frozen, batch norm folded: what the worker runs
        np.testing.assert_allclose(fast.score_last(x).numpy(), detector.score(windows)[:, -1:], rtol=1e-4, atol=1e-4)


def test_alphas_put_held_out_scores_near_one(trained_models):
    """The alpha-sigma rule: alpha_m is a high quantile of metric m's held-out scores, so the
    scores (z / alpha) of normal data rarely exceed 1."""
    _, detectors = trained_models
    alpha = detectors["omi-1"].alpha
    assert alpha.shape == (19,) and (alpha >= 1.0).all() and len(np.unique(alpha)) > 1


@pytest.mark.parametrize("dilations", [[1, 2, 4, 8, 16, 32], [1, 3], [2, 5, 1]])
def test_last_step_equals_the_full_window(dilations):
    """The cone of the last step: only the decoder outputs it reads are computed."""
    detector = DCVAE(window=24, channels=6, dilations=dilations, epochs=1)
    detector.fit(np.random.default_rng(0).standard_normal((40, 24, 4)).astype(np.float32))
    for module in detector.net.modules():  # non-trivial batch norm statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 24, 4)).astype(np.float32))
    scoring = detector.scoring_module()
    with torch.no_grad():
        torch.testing.assert_close(scoring.score_last(x), scoring(x)[:, -1:], rtol=1e-5, atol=1e-5)


def test_labelled_anomalies_rank_above_shuffled_scores(trained_models, asd_series):
    """Without point-adjust, the trained model's best F1 beats the same scores shuffled in
    time (same distribution, no information) by a clear margin."""
    _, detectors = trained_models
    series, detector = asd_series["omi-2"], detectors["omi-2"]
    scores = reduce_scores(point_scores(detector, series.test, history=series.train), detector.reduction)
    rng = np.random.default_rng(0)
    shuffled = max(best_f1(rng.permutation(scores), series.labels).f1 for _ in range(5))
    assert best_f1(scores, series.labels).f1 > 3 * shuffled, shuffled


def test_export_refuses_a_model_that_does_not_match(tmp_path, trained_models, asd_series):
    _, detectors = trained_models
    detector = detectors["omi-2"]
    windows = sliding_windows(asd_series["omi-2"].test[:40], detector.window)
    original = detector.score

    detector.score = lambda w: original(w) + 1.0  # what the exported file computes no longer matches
    info = ModelInfo(name="dcvae", version="t", metrics=[], window=detector.window, threshold=1.0)
    try:
        with pytest.raises(RuntimeError, match="parity"):
            export(detector, info, tmp_path / "m.pt", windows)
    finally:
        del detector.score
    assert not (tmp_path / "m.pt").exists()
