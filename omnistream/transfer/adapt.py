"""Adaptive transfer of a cluster's base model to one entity (OmniTransfer section 4.4).

DiffScore (eq. 10, ``diffscore``) says how foreign the entity's data is to the base model.
At or below ``beta`` the whole base model is fine-tuned (full transfer); above, a fresh model
takes the base model's shared layers, trains the rest with them frozen (BatchNorm statistics
included), then fine-tunes everything (partial transfer). Detectors without trainable layers
(z-score, PCA) are simply fitted on the entity's data (``refit``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from omnistream.detectors.base import Detector, sliding_windows
from omnistream.detectors.calibration import Pot
from omnistream.detectors.neural import NeuralDetector
from omnistream.detectors.registry import create
from omnistream.offline.fit import Calibration, Fitted, calibrate, split_history
from omnistream.transfer.config import TransferConfig
from omnistream.transfer.diffscore import diff_score, target_scaling


@dataclass
class Transferred:
    fitted: Fitted
    strategy: str  # full | partial | refit
    diff_score: float | None
    cpu_seconds: float


def choose(diff: float, config: TransferConfig) -> str:
    if config.strategy != "adaptive":
        return config.strategy
    if config.beta is None:
        raise ValueError("beta is not set: take it from the base models (BaseIndex.resolve)")
    return "full" if diff <= config.beta else "partial"


def _fresh_copy(detector: Detector, epochs: int) -> Detector:
    out = copy.deepcopy(detector)
    out.config.epochs = epochs
    out.train_seconds, out.history = 0.0, {"train_loss": [], "val_loss": []}
    return out


def transfer(base: Detector, reference: float, history: np.ndarray, config: TransferConfig | None = None,
             calibration: Calibration | None = None) -> Transferred:
    """The entity's model from its first ``history`` (T, M) points: train on the older part,
    calibrate the label-free threshold on the newest ``calibration.fraction``."""
    config = config or TransferConfig()
    calibration = calibration or Calibration()
    started = time.process_time()
    train, held_out = split_history(history, base.window, calibration)
    if not isinstance(base, NeuralDetector):
        detector = create(base.name, **base.config.model_dump())
        detector.fit_series(train)
        return Transferred(calibrate(detector, train, held_out, calibration), "refit", None,
                           time.process_time() - started)
    diff = diff_score(base, train, reference)
    strategy = choose(diff, config)
    full_epochs, head_epochs, all_epochs = config.epochs(base.config.epochs)
    windows = sliding_windows(train, base.window, base.config.train_stride)
    if strategy == "full":
        detector = _fresh_copy(base, full_epochs)
        detector.fit(windows)
    else:
        detector = create(base.name, **{**base.config.model_dump(), "epochs": head_epochs})
        shared = set(detector.adopt_layers(base))
        detector.fit(windows, trainable=lambda name: name not in shared)
        detector.config.epochs = all_epochs
        detector.fit(windows)
    fitted = calibrate(detector, train, held_out, calibration)
    return Transferred(fitted, strategy, diff, time.process_time() - started)


def cold_start(base: Detector, base_calibration: dict, first: np.ndarray) -> Fitted:
    """The base model as it is, reading the entity's raw data z-scored with the statistics of
    its first points, and the base model's own threshold: a model for a brand-new entity
    before it has enough data to train on (strategy ``base``)."""
    if not isinstance(base, NeuralDetector):
        raise TypeError(f"{base.name} has no base model to start from")
    scaling = target_scaling(first)
    pot = Pot.from_dict(base_calibration)
    return Fitted(base.rebased(scaling.center, scaling.scale), pot, np.empty(0))
