"""What the neural detectors share: per-metric standardisation baked into the exported
module, and one training loop (Adam, shuffled mini-batches, early stopping on the newest
``val_fraction`` of the windows, best weights restored, frozen layers kept frozen).
"""

from __future__ import annotations

import copy
import time
import warnings
from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from omnistream.detectors.base import Detector, DetectorConfig, EpochCallback, Trainable


class NeuralConfig(DetectorConfig):
    epochs: int = Field(30, ge=1, description="most passes over the training windows (early stopping may end sooner)")
    batch_size: int = Field(256, ge=2, description="windows per gradient step")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="newest share of windows held out for early stopping")
    patience: int = Field(5, ge=1, description="epochs without validation improvement before stopping")
    device: str = Field("auto", pattern="^(auto|cpu|cuda(:[0-9]+)?)$",
                        description="where training runs: auto (cuda when present), cpu or cuda; scoring "
                                    "modules are exported for CPU and moved by the worker")


class Standardise(nn.Module):
    """(x - center) / scale per metric; missing values (NaN) become the centre (0)."""

    def __init__(self, center: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num((x - self.center) / self.scale, nan=0.0)


def standardisation(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-metric centre and scale of training windows; constant metrics get scale 1. A metric
    never observed in training gets an infinite scale: it reads 0 (as missing values do, and as
    it did in training) instead of its raw value, which nothing learned could judge."""
    flat = windows.reshape(-1, windows.shape[-1])
    observed = np.isfinite(flat).any(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of a never-observed metric
        center = np.nan_to_num(np.nanmean(flat, axis=0)).astype(np.float32)
        std = np.nan_to_num(np.nanstd(flat, axis=0)).astype(np.float32)
    return center, np.where(observed, np.where(std > 1e-6, std, 1.0), np.inf).astype(np.float32)


def training_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but no CUDA device is available")
    return name


def freeze_batchnorm_of_frozen(net: nn.Module, trainable: Trainable | None) -> None:
    """BatchNorm layers whose parameters are frozen also keep their running statistics."""
    if trainable is None:
        return
    for prefix, module in net.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            names = [f"{prefix}.{n}" for n, _ in module.named_parameters()]
            if names and not any(trainable(n) for n in names):
                module.eval()


class NeuralDetector(Detector):
    """A detector whose model is a torch network trained by gradient descent on standardised
    windows. Subclasses build the network, define the loss and the scoring module."""

    config_class = NeuralConfig
    # Parameter-name prefixes that carry over from a base model in partial transfer; the
    # rest of the network (the head) retrains.
    shared_layers: ClassVar[tuple[str, ...]] = ("encoder.",)

    @classmethod
    def stochastic(cls, config: dict) -> bool:
        return True  # initial weights and shuffling

    def __init__(self, config: NeuralConfig | None = None, **overrides: object):
        super().__init__(config, **overrides)
        self.net: nn.Module | None = None
        self.standardise: Standardise | None = None

    @abstractmethod
    def build(self, metrics: int) -> nn.Module:
        """The untrained network for windows of ``metrics`` metrics."""

    @abstractmethod
    def loss(self, batch: torch.Tensor, epoch: int) -> torch.Tensor:
        """Training loss of standardised windows (B, W, M) at ``epoch`` (0-based)."""

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Early-stopping criterion on held-out windows; it must not change with the epoch."""
        return self.loss(batch, 0)

    def optimizers(self, trainable: set[str]) -> list[torch.optim.Optimizer]:
        """One Adam over the trainable parameters; adversarial detectors override."""
        assert self.net is not None
        params = [p for n, p in self.net.named_parameters() if n in trainable]
        return [torch.optim.Adam(params, lr=self.config.learning_rate)]

    def train_step(self, batch: torch.Tensor, epoch: int, optimizers: list[torch.optim.Optimizer]) -> float:
        loss = self.loss(batch, epoch)
        optimizers[0].zero_grad()
        loss.backward()
        optimizers[0].step()
        return float(loss.item())

    def after_fit(self, train: torch.Tensor, val: torch.Tensor) -> None:
        """Hook for what a detector derives from its data once trained (e.g. DC-VAE's alphas)."""

    def fit(self, windows: np.ndarray, trainable: Trainable | None = None,
            progress: EpochCallback | None = None) -> NeuralDetector:
        cfg = self.config
        windows = self._check_windows(windows)
        torch.manual_seed(cfg.seed)
        if self.net is None:
            self.metrics = windows.shape[2]
            self.net = self.build(self.metrics)
        self.standardise = Standardise(*standardisation(windows))
        with torch.no_grad():
            data = self.standardise(torch.from_numpy(np.ascontiguousarray(windows)))
        device = torch.device(training_device(cfg.device))
        self.net.to(device)
        data = data.to(device)
        n_val = int(len(data) * cfg.val_fraction) if len(data) >= 20 else 0
        train, val = data[: len(data) - n_val], data[len(data) - n_val:]
        names = {n for n, _ in self.net.named_parameters() if trainable is None or trainable(n)}
        for n, p in self.net.named_parameters():
            p.requires_grad_(n in names)
        optimizers = self.optimizers(names)
        rng = np.random.default_rng(cfg.seed)
        best, best_state, stale = float("inf"), copy.deepcopy(self.net.state_dict()), 0
        start = time.perf_counter()
        for epoch in range(cfg.epochs):
            self.net.train()
            freeze_batchnorm_of_frozen(self.net, trainable)
            order = torch.from_numpy(rng.permutation(len(train))).to(device)
            total, seen = 0.0, 0
            for i in range(0, len(train), cfg.batch_size):
                batch = train[order[i:i + cfg.batch_size]]
                if len(batch) < 2:
                    continue
                total += self.train_step(batch, epoch, optimizers) * len(batch)
                seen += len(batch)
            train_loss = total / max(1, seen)
            val_loss = self._eval_loss(val) if n_val else train_loss
            self.history["train_loss"].append(train_loss)
            self.history["val_loss"].append(val_loss)
            if progress:
                progress(epoch, train_loss, val_loss)
            if best == float("inf") or val_loss < best - 1e-4 * max(1.0, abs(best)):
                best, best_state, stale = val_loss, copy.deepcopy(self.net.state_dict()), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        self.net.load_state_dict(best_state)
        for p in self.net.parameters():
            p.requires_grad_(True)
        self.net.eval().cpu()
        self.train_seconds += time.perf_counter() - start
        with torch.no_grad():
            self.after_fit(train.cpu(), val.cpu())
        return self

    @torch.no_grad()
    def _eval_loss(self, data: torch.Tensor) -> float:
        assert self.net is not None
        self.net.eval()
        total = 0.0
        for i in range(0, len(data), 1024):
            batch = data[i:i + 1024]
            total += float(self.validation_loss(batch).item()) * len(batch)
        return total / len(data)

    def frozen_copy(self) -> tuple[nn.Module, Standardise]:
        """The trained network and standardisation, copied for a scoring module."""
        self._require_fitted()
        assert self.net is not None and self.standardise is not None
        return copy.deepcopy(self.net).eval(), copy.deepcopy(self.standardise)

    def layer_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.net.named_parameters()] if self.net is not None else []
        return {"shared": [n for n in names if n.startswith(self.shared_layers)],
                "head": [n for n in names if not n.startswith(self.shared_layers)]}

    def adopt_layers(self, base: NeuralDetector) -> list[str]:
        """Partial transfer (OmniTransfer section 4.4): fresh seeded weights for the metrics
        ``base`` was fitted on, then the shared layers' parameters and buffers (BatchNorm
        statistics included) copied from ``base``; returns the copied parameters' names."""
        base._require_fitted()
        assert base.net is not None
        torch.manual_seed(self.config.seed)
        self.metrics = base.metrics
        self.net = self.build(base.metrics)
        shared = {k: v for k, v in base.net.state_dict().items() if k.startswith(self.shared_layers)}
        self.net.load_state_dict(shared, strict=False)
        return [n for n, _ in self.net.named_parameters() if n.startswith(self.shared_layers)]

    def rebased(self, center: np.ndarray, scale: np.ndarray) -> NeuralDetector:
        """A copy that reads raw data whose per-metric z-score is ``(x - center) / scale``: the
        z-score composed with this detector's own standardisation, so it scores the raw data as
        it scores z-scored data (what a cluster's base model was trained on)."""
        self._require_fitted()
        assert self.standardise is not None
        out = copy.deepcopy(self)
        inner_center, inner_scale = self.standardise.center.numpy(), self.standardise.scale.numpy()
        out.standardise = Standardise(center + inner_center * scale, scale * inner_scale)
        return out
