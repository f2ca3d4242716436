"""DC-VAE: a VAE built from dilated causal convolutions (García González et al.).

Encoder and decoder are stacks of kernel-2 causal Conv1d layers with growing dilation, so
each time step sees only its past; the decoder outputs a Gaussian (mean, log-variance) per
time step and metric. The per-point, per-metric score is the alpha-sigma distance
|x - mean| / sigma (the paper flags a metric when it exceeds its alpha); ``detectors.reduce``
reduces it to one score per point, by default the mean of its squares over metrics.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class DCVAEConfig:
    window: int = 64
    channels: int = 32
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    latent: int = 4
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 2e-3
    val_fraction: float = 0.1
    patience: int = 5
    min_log_var: float = -9.0
    seed: int = 0


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

    def forward(self, x: torch.Tensor, sample: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
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
    """Raw windows (B, T, M) -> alpha-sigma scores |x - mean| / sigma, normalisation inside."""

    def __init__(self, net: DCVAENet, center: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.net = net
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = (x - self.center) / self.scale
        x_mean, x_log_var, _, _ = self.net(xn, False)
        return (xn - x_mean).abs() * torch.exp(-0.5 * x_log_var)

    @torch.jit.export
    def score_last(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)[:, -1:]`` with about half the work: what a stream scores per point."""
        xn = (x - self.center) / self.scale
        x_mean, x_log_var = self.net.last_step(xn)
        return (xn[:, -1:] - x_mean).abs() * torch.exp(-0.5 * x_log_var)


class DCVAE:
    """DC-VAE detector: fit on windows, score windows, export to TorchScript."""

    name = "dcvae"

    def __init__(self, metrics: int, config: DCVAEConfig | None = None):
        self.config = config or DCVAEConfig()
        self.window = self.config.window
        self.metrics = metrics
        torch.manual_seed(self.config.seed)
        self.net = DCVAENet(metrics, self.config)
        self.center = np.zeros(metrics, dtype=np.float32)
        self.scale = np.ones(metrics, dtype=np.float32)
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        self.train_seconds = 0.0

    def set_normalisation(self, series: np.ndarray) -> None:
        """Per-metric centre and scale from a training series (T, M); constant metrics get scale 1."""
        self.center = np.nanmean(series, axis=0).astype(np.float32)
        std = np.nanstd(series, axis=0).astype(np.float32)
        self.scale = np.where(std > 1e-6, std, 1.0).astype(np.float32)

    def fit(self, windows: np.ndarray, epochs: int | None = None, learning_rate: float | None = None,
            trainable: Callable[[str], bool] | None = None,
            progress: Callable[[int, float, float], None] | None = None) -> "DCVAE":
        """Train on windows (count, T, M) with early stopping on the last val_fraction.

        ``trainable(parameter_name)`` freezes the parameters it rejects (partial transfer).
        """
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        data = torch.from_numpy(((np.asarray(windows, dtype=np.float32) - self.center) / self.scale))
        n_val = int(len(data) * cfg.val_fraction) if len(data) >= 20 else 0
        train, val = data[: len(data) - n_val], data[len(data) - n_val:]
        params = [p for n, p in self.net.named_parameters() if trainable is None or trainable(n)]
        for n, p in self.net.named_parameters():
            p.requires_grad_(trainable is None or trainable(n))
        opt = torch.optim.Adam(params, lr=learning_rate or cfg.learning_rate)
        best, best_state, stale = float("inf"), copy.deepcopy(self.net.state_dict()), 0
        start = time.perf_counter()
        for epoch in range(epochs or cfg.epochs):
            self.net.train()
            order = torch.from_numpy(rng.permutation(len(train)))
            total = 0.0
            for i in range(0, len(train), cfg.batch_size):
                batch = train[order[i:i + cfg.batch_size]]
                if len(batch) < 2:
                    continue
                loss = elbo_loss(batch, *self.net(batch, True))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(batch)
            train_loss = total / max(1, len(train))
            val_loss = self._loss(val) if n_val else train_loss
            self.history["train_loss"].append(train_loss)
            self.history["val_loss"].append(val_loss)
            if progress:
                progress(epoch, train_loss, val_loss)
            if val_loss < best - 1e-4:
                best, best_state, stale = val_loss, copy.deepcopy(self.net.state_dict()), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        self.net.load_state_dict(best_state)
        for p in self.net.parameters():
            p.requires_grad_(True)
        self.train_seconds += time.perf_counter() - start
        self.net.eval()
        return self

    @torch.no_grad()
    def _loss(self, data: torch.Tensor) -> float:
        self.net.eval()
        total = 0.0
        for i in range(0, len(data), 1024):
            batch = data[i:i + 1024]
            total += elbo_loss(batch, *self.net(batch, False)).item() * len(batch)
        return total / len(data)

    def scoring_module(self) -> ScoringModule:
        return ScoringModule(copy.deepcopy(self.net).eval(), self.center, self.scale)

    @torch.no_grad()
    def score(self, windows: np.ndarray) -> np.ndarray:
        """Per-point, per-metric alpha-sigma scores (count, T, M)."""
        module = self.scoring_module()
        return module(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))).numpy()

    def transferable_layers(self) -> dict[str, list[str]]:
        """Layer groups for partial transfer: the encoder carries over, the heads retrain."""
        names = [n for n, _ in self.net.named_parameters()]
        return {
            "shared": [n for n in names if n.startswith(("encoder.", "decoder."))],
            "head": [n for n in names if n.startswith(("z_mean.", "z_log_var.", "x_mean.", "x_log_var."))],
        }
