"""The conformance suite every registered detector passes (river's ``check_estimator`` for
this contract). ``check_detector(name, **config)`` runs all checks on small synthetic data
and raises AssertionError naming the one that failed; tests run it on every registry entry.

Checks: fit and score shapes; causality (changing future points does not change past point
scores); TorchScript export parity for ``forward`` and ``score_last``, also after the
worker's inference optimisation; determinism under a seed; an injected anomaly ranks above
chance; frozen layers (and their BatchNorm statistics) stay frozen when only some train.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from omnistream.detectors.base import Detector, point_scores, sliding_windows
from omnistream.detectors.export import LAST_STEP, ModelInfo, export, load, optimise_for_inference
from omnistream.detectors.reduce import reduce_scores
from omnistream.detectors.registry import create

INJECTED = slice(300, 330)  # the anomalous stretch of the synthetic test series


def synthetic(length: int = 1200, metrics: int = 3, seed: int = 0) -> np.ndarray:
    """Periodic metrics with noise (T, M): a server's day-night cycles in miniature."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    periods = 24 + 7 * np.arange(metrics)
    return (np.sin(2 * np.pi * t / periods + rng.uniform(0, 6, metrics))
            + 0.1 * rng.standard_normal((length, metrics))).astype(np.float32)


def with_anomaly(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The series with a level shift and spikes injected into INJECTED, and its labels."""
    out = series.copy()
    out[INJECTED, 0] += 4.0
    out[INJECTED.start::7, 1][:4] -= 5.0
    labels = np.zeros(len(series), dtype=bool)
    labels[INJECTED] = True
    return out, labels


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that an anomalous point outscores a normal one (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    pos = labels.sum()
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * (len(labels) - pos)))


def _fitted(name: str, config: dict, train: np.ndarray) -> Detector:
    return create(name, **config).fit_series(train)


def check_fit_and_shapes(name: str, config: dict, train: np.ndarray, test: np.ndarray) -> Detector:
    detector = _fitted(name, config, train)
    windows = sliding_windows(test[:40 + detector.window], detector.window)
    z = detector.score(windows)
    assert z.ndim == 3 and z.shape[0] == len(windows) and z.shape[2] == train.shape[1] and 1 <= z.shape[1] <= \
        detector.window, f"{name}: score() returned {z.shape} for windows {windows.shape}"
    assert np.isfinite(z).all(), f"{name}: non-finite scores"
    np.testing.assert_allclose(detector.score_last(windows), z[:, -1], rtol=1e-5, atol=1e-5,
                               err_msg=f"{name}: score_last differs from score()[:, -1]")
    return detector


def check_causal(detector: Detector, test: np.ndarray) -> None:
    k = 200
    changed = test.copy()
    changed[k:] += np.random.default_rng(1).normal(0, 3, changed[k:].shape).astype(np.float32)
    a, b = point_scores(detector, test), point_scores(detector, changed)
    np.testing.assert_allclose(a[:k], b[:k], rtol=1e-5, atol=1e-6,
                               err_msg=f"{detector.name}: future points changed past scores")


def check_export_parity(detector: Detector, test: np.ndarray) -> None:
    windows = sliding_windows(test[:31 + detector.window], detector.window)
    info = ModelInfo(name=detector.name, version="check", metrics=[f"m{i}" for i in range(test.shape[1])],
                     window=detector.window, threshold=1.0, reduction=detector.reduction)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        export(detector, info, path, windows)  # raises on a parity failure
        module, loaded = load(path)
    assert loaded == info
    fast = optimise_for_inference(module)
    call = getattr(fast, LAST_STEP) if hasattr(fast, LAST_STEP) else (lambda x: fast(x)[:, -1:])
    with torch.no_grad():
        got = call(torch.from_numpy(np.require(windows, np.float32, ["C", "W"])))[:, -1].numpy()
    np.testing.assert_allclose(got, detector.score_last(windows), rtol=1e-4, atol=1e-4,
                               err_msg=f"{detector.name}: the optimised module the worker runs differs")


def check_deterministic(name: str, config: dict, train: np.ndarray, test: np.ndarray, first: Detector) -> None:
    again = _fitted(name, config, train)
    np.testing.assert_allclose(point_scores(again, test[:200]), point_scores(first, test[:200]), rtol=1e-5,
                               atol=1e-6, err_msg=f"{name}: two fits with seed {config.get('seed', 0)} differ")


def check_ranks_injected_anomaly(detector: Detector, test: np.ndarray, minimum: float = 0.8) -> None:
    anomalous, labels = with_anomaly(test)
    scores = reduce_scores(point_scores(detector, anomalous), detector.reduction)
    got = auc(scores, labels)
    assert got >= minimum, f"{detector.name}: injected anomaly ranked with AUC {got:.3f} < {minimum}"


def check_frozen_layers_stay_frozen(name: str, config: dict, train: np.ndarray, first: Detector) -> None:
    groups = first.layer_groups()
    if not groups.get("shared"):
        return  # nothing to transfer: statistics, not trained layers
    net = first.net
    shared = set(groups["shared"])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first.fit(sliding_windows(train, first.window), trainable=lambda n: n not in shared)
    after = net.state_dict()
    frozen_modules = {n.rsplit(".", 1)[0] for n in shared}
    for key in before:
        module = key.rsplit(".", 1)[0]
        if key in shared or (module in frozen_modules and not key.endswith("num_batches_tracked")):
            assert torch.equal(before[key], after[key]), f"{name}: frozen {key} changed in partial training"
    assert any(not torch.equal(before[k], after[k]) for k in groups["head"]), f"{name}: no head layer trained"


def check_detector(name: str, metrics: int = 3, **config: object) -> None:
    """Run every check on detector ``name`` with ``config`` (keep it small: seconds, not minutes),
    on synthetic series of ``metrics`` columns (a system detector's: nodes x metrics per node)."""
    clean = synthetic(length=1400, metrics=metrics)
    train, test = clean[:800], clean[800:]
    first = check_fit_and_shapes(name, config, train, test)
    steps: list[Callable[[], None]] = [
        lambda: check_causal(first, test),
        lambda: check_export_parity(first, test),
        lambda: check_deterministic(name, config, train, test, first),
        lambda: check_ranks_injected_anomaly(first, test),
        lambda: check_frozen_layers_stay_frozen(name, config, train, first),  # last: it retrains `first`
    ]
    for step in steps:
        step()
