"""USAD: UnSupervised Anomaly Detection on multivariate time series (Audibert et al., KDD 2020).

One encoder E and two decoders D1, D2 over the flattened window (section 3.2). Training
(eq. 6-7, n the epoch): AE1 = D1(E(W)) minimises 1/n |W - AE1|^2 + (1 - 1/n) |W - D2(E(AE1))|^2,
AE2 = D2(E(W)) minimises 1/n |W - AE2|^2 - (1 - 1/n) |W - D2(E(AE1))|^2: AE2 learns to tell
real windows from AE1's reconstructions while AE1 learns to fool it; each has its own
optimiser, as in the paper. Score (eq. 8): alpha |W - AE1(W)|^2 + beta |W - AE2(AE1(W))|^2
per point and metric, returned as its square root (a residual in units of the metric's
standard deviation) and reduced by the mean over metrics; ``residual: square`` keeps the
paper's squares (README, Evaluation: how the two compare, with and without labels). Inputs are
standardised per metric (the paper min-max scales), so the decoders end without a sigmoid.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from omnistream.detectors.neural import NeuralConfig, NeuralDetector, Standardise


class USADConfig(NeuralConfig):
    """Paper defaults (section 4.3): window 10 on SWaT-like data, latent 40 scaled to the input."""

    window: int = Field(10, ge=1, description="points per window (the paper's K)")
    latent: int = Field(40, ge=1, description="size of the latent code (the paper's m)")
    alpha: float = Field(0.5, ge=0, description="weight of AE1's error in the score (eq. 8)")
    beta: float = Field(0.5, ge=0, description="weight of AE2(AE1)'s error in the score (eq. 8)")
    residual: Literal["root", "square"] = Field("root", description="score per point and metric: the root of "
                                                                   "eq. 8 (units of the metric's std) or eq. 8")
    epochs: int = 50
    patience: int = 8


def _mlp(sizes: list[int], last: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(nn.ReLU() if i < len(sizes) - 2 or last is None else last)
    return nn.Sequential(*layers)


class USADNet(nn.Module):
    """E, D1, D2 with layer sizes w, w/2, w/4, latent (section 3.2, the authors' layout)."""

    def __init__(self, window: int, metrics: int, latent: int):
        super().__init__()
        w = window * metrics
        self.window, self.metrics = window, metrics
        self.encoder = _mlp([w, max(w // 2, 1), max(w // 4, 1), latent], nn.ReLU())
        self.decoder1 = _mlp([latent, max(w // 4, 1), max(w // 2, 1), w], nn.Identity())
        self.decoder2 = _mlp([latent, max(w // 4, 1), max(w // 2, 1), w], nn.Identity())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(AE1(W), AE2(W), AE2(AE1(W))), each (B, W, M)."""
        flat = x.reshape(x.size(0), -1)
        z = self.encoder(flat)
        ae1 = self.decoder1(z)
        ae2 = self.decoder2(z)
        ae2ae1 = self.decoder2(self.encoder(ae1))
        shape = (x.size(0), self.window, self.metrics)
        return ae1.reshape(shape), ae2.reshape(shape), ae2ae1.reshape(shape)


class ScoringModule(nn.Module):
    def __init__(self, net: USADNet, standardise: Standardise, alpha: float, beta: float, root: bool):
        super().__init__()
        self.net = net
        self.standardise = standardise
        self.alpha, self.beta, self.root = alpha, beta, root

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.standardise(x)
        ae1, _, ae2ae1 = self.net(xn)
        squares = self.alpha * (xn - ae1) ** 2 + self.beta * (xn - ae2ae1) ** 2
        return torch.sqrt(squares) if self.root else squares


class USAD(NeuralDetector):
    name = "usad"
    config_class = USADConfig
    paper = "Audibert et al., USAD, KDD 2020"
    reduction = "mean"

    def build(self, metrics: int) -> USADNet:
        return USADNet(self.config.window, metrics, self.config.latent)

    def _errors(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ae1, ae2, ae2ae1 = self.net(batch)
        return ((batch - ae1) ** 2).mean(), ((batch - ae2) ** 2).mean(), ((batch - ae2ae1) ** 2).mean()

    def loss(self, batch: torch.Tensor, epoch: int) -> torch.Tensor:
        """Validation loss for early stopping: both autoencoders' reconstruction errors (the
        adversarial terms of eq. 6 and 7 cancel in a sum, and change weight every epoch)."""
        e1, e2, _ = self._errors(batch)
        return e1 + e2

    def optimizers(self, trainable: set[str]) -> list[torch.optim.Optimizer | None]:
        named = dict(self.net.named_parameters())
        ae1 = [p for n, p in named.items() if n in trainable and n.startswith(("encoder.", "decoder1."))]
        ae2 = [p for n, p in named.items() if n in trainable and n.startswith(("encoder.", "decoder2."))]
        lr = self.config.learning_rate
        return [torch.optim.Adam(ae1, lr=lr) if ae1 else None, torch.optim.Adam(ae2, lr=lr) if ae2 else None]

    def train_step(self, batch: torch.Tensor, epoch: int, optimizers: list[torch.optim.Optimizer | None]) -> float:
        """The two adversarial updates of Algorithm 1, AE1 first, then AE2."""
        n = epoch + 1
        opt1, opt2 = optimizers
        e1, _, e21 = self._errors(batch)
        loss1 = e1 / n + (1 - 1 / n) * e21
        if opt1 is not None:
            opt1.zero_grad()
            loss1.backward()
            opt1.step()
        _, e2, e21 = self._errors(batch)
        loss2 = e2 / n - (1 - 1 / n) * e21
        if opt2 is not None:
            opt2.zero_grad()
            loss2.backward()
            opt2.step()
        return float(loss1.item() + loss2.item())

    def scoring_module(self) -> ScoringModule:
        net, standardise = self.frozen_copy()
        return ScoringModule(net, standardise, self.config.alpha, self.config.beta, self.config.residual == "root")
