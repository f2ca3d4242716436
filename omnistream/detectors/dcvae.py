"""DC-VAE: a VAE built from dilated causal convolutions (García González et al., "DC-VAE,
fine-grained anomaly detection in multivariate time-series with dilated convolutions and
variational auto encoders", 2022; README in the papers folder).

Encoder and decoder are stacks of kernel-2 causal Conv1d layers with growing dilation, so
each time step sees only its past; the decoder outputs a Gaussian (mean, log-variance) per
time step and metric. The paper flags metric m at time t when |x - mean| / sigma exceeds its
own alpha_m (the alpha-sigma rule). The alphas are set here without labels, as a high
quantile of each metric's scores on the held-out newest training windows, and folded into
the scores: a point's score is max_m |x_m - mean_m| / (sigma_m alpha_m), > 1 where the
paper's rule fires (reduction ``max``).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import nn

from omnistream.detectors.neural import NeuralConfig, NeuralDetector, Standardise


class DCVAEConfig(NeuralConfig):
    """Defaults follow the paper's settings scaled to train one ASD server in about a minute
    on two CPU cores."""

    window: int = Field(64, ge=2, description="points per window (the paper uses the receptive field of the stack)")
    train_stride: int = 2
    learning_rate: float = 2e-3
    channels: int = Field(32, ge=1, description="filters per causal convolution layer")
    dilations: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32],
                                 description="dilation of each layer of the encoder (the decoder reverses them)")
    latent: int = Field(4, ge=1, description="latent channels per time step")
    min_log_var: float = Field(-9.0, description="floor of the decoder's log-variance (keeps sigma > 0)")
    alpha_quantile: float = Field(0.999, gt=0.5, lt=1.0,
                                  description="quantile of each metric's held-out scores that sets its alpha")


class CausalConv(nn.Module):
    """Kernel-2 Conv1d that pads on the left only, so output t depends on inputs <= t."""

    def __init__(self, c_in: int, c_out: int, dilation: int):
        super().__init__()
        self.pad = dilation
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=2, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.pad(x, (self.pad, 0)))

    def tail(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """The last ``n`` outputs of ``forward(x)`` (all of them when n >= length), reading only
        the last n + dilation inputs."""
        length = x.size(2)
        need = min(n, length) + self.pad
        x = x[:, :, length - need:] if need <= length else nn.functional.pad(x, (need - length, 0))
        return self.conv(x)


class CausalBlock(nn.Module):
    """One layer of a stack: causal convolution, activation, batch norm."""

    def __init__(self, c_in: int, c_out: int, dilation: int, activation: type[nn.Module]):
        super().__init__()
        self.conv = CausalConv(c_in, c_out, dilation)
        self.act = activation()
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.conv(x)))

    def tail(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return self.norm(self.act(self.conv.tail(x, n)))


def _stack(c_in: int, channels: int, dilations: list[int], activation: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(*[CausalBlock(c_in if i == 0 else channels, channels, d, activation)
                           for i, d in enumerate(dilations)])


class DCVAENet(nn.Module):
    """The network; tensors are (batch, metrics, time) inside, (batch, time, metrics) outside."""

    def __init__(self, metrics: int, cfg: DCVAEConfig):
        super().__init__()
        self.encoder = _stack(metrics, cfg.channels, cfg.dilations, nn.Tanh)
        self.z_mean = CausalConv(cfg.channels, cfg.latent, cfg.dilations[-1])
        self.z_log_var = CausalConv(cfg.channels, cfg.latent, cfg.dilations[-1])
        self.decoder = _stack(cfg.latent, cfg.channels, cfg.dilations[::-1], nn.ELU)
        self.x_mean = CausalConv(cfg.channels, metrics, cfg.dilations[0])
        self.x_log_var = CausalConv(cfg.channels, metrics, cfg.dilations[0])
        self.min_log_var = cfg.min_log_var
        # Outputs each decoder block must give for the last time step: the heads read
        # 1 + dilation of the top block's, and each block reads n + its dilation of the one below.
        lengths, n = [], 1 + cfg.dilations[0]
        for d in cfg.dilations:  # the decoder's dilations, top block first
            lengths.append(n)
            n += d
        self.tail_lengths: list[int] = lengths[::-1]

    def forward(self, x: torch.Tensor,
                sample: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x.transpose(1, 2))
        z_mean, z_log_var = self.z_mean(h), self.z_log_var(h)
        z = z_mean + torch.exp(0.5 * z_log_var) * torch.randn_like(z_mean) if sample else z_mean
        d = self.decoder(z)
        x_mean = self.x_mean(d).transpose(1, 2)
        x_log_var = self.x_log_var(d).transpose(1, 2).clamp_min(self.min_log_var)
        return x_mean, x_log_var, z_mean, z_log_var

    @torch.jit.export
    def last_step(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_mean, x_log_var) of the last time step only, (B, 1, M): the same values as
        ``forward``'s last step, computing only the part of the decoder that step reads."""
        d = self.z_mean(self.encoder(x.transpose(1, 2)))
        for i, block in enumerate(self.decoder):
            d = block.tail(d, self.tail_lengths[i])
        x_mean = self.x_mean.tail(d, 1).transpose(1, 2)
        x_log_var = self.x_log_var.tail(d, 1).transpose(1, 2).clamp_min(self.min_log_var)
        return x_mean, x_log_var


def elbo_loss(x: torch.Tensor, x_mean: torch.Tensor, x_log_var: torch.Tensor, z_mean: torch.Tensor,
              z_log_var: torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood plus KL to N(0, I), both averaged per element."""
    nll = 0.5 * ((x - x_mean) ** 2 * torch.exp(-x_log_var) + x_log_var).mean()
    kl = -0.5 * (1 + z_log_var - z_mean**2 - torch.exp(z_log_var)).mean()
    return nll + kl


class ScoringModule(nn.Module):
    """Raw windows (B, T, M) -> |x - mean| / (sigma alpha) per metric, normalisation inside."""

    def __init__(self, net: DCVAENet, standardise: Standardise, alpha: np.ndarray):
        super().__init__()
        self.net = net
        self.standardise = standardise
        self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.standardise(x)
        x_mean, x_log_var, _, _ = self.net(xn, False)
        return (xn - x_mean).abs() * torch.exp(-0.5 * x_log_var) / self.alpha

    @torch.jit.export
    def score_last(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)[:, -1:]`` with about half the work: what a stream scores per point."""
        xn = self.standardise(x)
        x_mean, x_log_var = self.net.last_step(xn)
        return (xn[:, -1:] - x_mean).abs() * torch.exp(-0.5 * x_log_var) / self.alpha


class DCVAE(NeuralDetector):
    """DC-VAE detector: ELBO training with one latent sample, alpha-sigma scores."""

    name = "dcvae"
    config_class = DCVAEConfig
    paper = "García González et al., DC-VAE (2022)"
    reduction = "max"
    shared_layers = ("encoder.", "decoder.")  # partial transfer: the stacks carry over, the heads retrain

    def __init__(self, config: DCVAEConfig | None = None, **overrides: object):
        super().__init__(config, **overrides)
        self.alpha: np.ndarray | None = None

    def build(self, metrics: int) -> DCVAENet:
        return DCVAENet(metrics, self.config)

    def loss(self, batch: torch.Tensor, epoch: int) -> torch.Tensor:
        return elbo_loss(batch, *self.net(batch, self.net.training))

    def after_fit(self, train: torch.Tensor, val: torch.Tensor) -> None:
        """Per-metric alpha: a high quantile of the held-out windows' last-step scores."""
        held_out = val if len(val) else train
        self.alpha = np.ones(self.metrics, dtype=np.float32)
        z = ScoringModule(self.net, Standardise(np.zeros(self.metrics), np.ones(self.metrics)), self.alpha)
        scores = torch.cat([z(part)[:, -1] for part in held_out.split(1024)]).numpy()
        alpha = np.quantile(scores, self.config.alpha_quantile, axis=0)
        self.alpha = np.maximum(alpha, 1.0).astype(np.float32)  # never stricter than one sigma

    def scoring_module(self) -> ScoringModule:
        net, standardise = self.frozen_copy()
        return ScoringModule(net, standardise, self.alpha)
