"""TranAD: deep transformer networks for anomaly detection in multivariate time series
(Tuli, Casale & Jennings, VLDB 2022).

A transformer encoder reads the window concatenated with a focus score F (section 3.3);
two decoders reconstruct the window's last point. Phase 1 runs with F = 0 and yields O1;
phase 2 (self-conditioning) runs with F = (O1 - W)^2 and yields O2. Training (eq. 6-8, n
the epoch) minimises (1/n) |O1 - x|^2 + (1 - 1/n) |O2 - x|^2, the authors' form of the
adversarial objective. Score (eq. 13): 1/2 |O1 - x|^2 + 1/2 |O2 - x|^2 per metric of the
last point, returned as its square root (a residual in units of the metric's standard
deviation) and reduced by the mean over metrics; ``forward`` returns only the last step
(B, 1, M). Roots rather than squares because sums of squares are heavy-tailed, which makes an
extreme-value threshold overshoot (README, Evaluation).
Inputs are standardised per metric (the paper min-max scales), so the output layer has no
sigmoid.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from omnistream.detectors.neural import NeuralConfig, NeuralDetector, Standardise


class TranADConfig(NeuralConfig):
    """Paper defaults (section 4 and the authors' code): window 10, one encoder layer,
    feed-forward 16, dropout 0.1, 5 epochs."""

    window: int = Field(10, ge=2, description="points per window (the paper's K)")
    feedforward: int = Field(16, ge=1, description="hidden units of each transformer feed-forward block")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout in the transformer layers")
    epochs: int = 5
    batch_size: int = 128


class PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, length: int):
        super().__init__()
        position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        self.register_buffer("pe", torch.sin(position * div) + torch.cos(position * div))  # as the authors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.size(1)]


class TranADNet(nn.Module):
    def __init__(self, window: int, metrics: int, cfg: TranADConfig):
        super().__init__()
        d_model = 2 * metrics
        self.metrics = metrics
        self.position = PositionalEncoding(d_model, window)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, metrics, cfg.feedforward, cfg.dropout, batch_first=True),
            1, enable_nested_tensor=False)
        self.decoder1 = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, metrics, cfg.feedforward, cfg.dropout, batch_first=True), 1)
        self.decoder2 = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, metrics, cfg.feedforward, cfg.dropout, batch_first=True), 1)
        self.output = nn.Linear(d_model, metrics)

    def _encode(self, window: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
        src = torch.cat([window, focus], dim=2) * math.sqrt(self.metrics)
        return self.encoder(self.position(src))

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(O1, O2), each (B, 1, M): the last point reconstructed in phase 1 and phase 2."""
        target = window[:, -1:].repeat(1, 1, 2)
        o1 = self.output(self.decoder1(target, self._encode(window, torch.zeros_like(window))))
        o2 = self.output(self.decoder2(target, self._encode(window, (o1 - window) ** 2)))
        return o1, o2


class ScoringModule(nn.Module):
    def __init__(self, net: TranADNet, standardise: Standardise):
        super().__init__()
        self.net = net
        self.standardise = standardise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.standardise(x)
        o1, o2 = self.net(xn)
        last = xn[:, -1:]
        return torch.sqrt(0.5 * (o1 - last) ** 2 + 0.5 * (o2 - last) ** 2)


class TranAD(NeuralDetector):
    name = "tranad"
    config_class = TranADConfig
    paper = "Tuli et al., TranAD, VLDB 2022"
    reduction = "mean"

    def build(self, metrics: int) -> TranADNet:
        return TranADNet(self.config.window, metrics, self.config)

    def loss(self, batch: torch.Tensor, epoch: int) -> torch.Tensor:
        o1, o2 = self.net(batch)
        last = batch[:, -1:]
        n = epoch + 1
        return ((o1 - last) ** 2).mean() / n + (1 - 1 / n) * ((o2 - last) ** 2).mean()

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """The score's own objective, 1/2 |O1 - x|^2 + 1/2 |O2 - x|^2, on held-out windows."""
        o1, o2 = self.net(batch)
        last = batch[:, -1:]
        return 0.5 * ((o1 - last) ** 2).mean() + 0.5 * ((o2 - last) ** 2).mean()

    def scoring_module(self) -> ScoringModule:
        return ScoringModule(*self.frozen_copy())
