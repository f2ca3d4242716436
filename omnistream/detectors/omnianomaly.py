"""OmniAnomaly: robust anomaly detection for multivariate time series through a stochastic
recurrent network (Su et al., KDD 2019).

q-net (section 3.2): a GRU reads the window; z_t ~ N(mu_t, sigma_t^2) from the GRU state e_t
and the previous latent z_{t-1} (the stochastic variable connection), then a chain of planar
normalizing flows makes the posterior non-Gaussian. p-net: a linear Gaussian state-space
prior z_t ~ N(A z_{t-1} + b, diag(s^2)) and a GRU decoder giving x_t ~ N(mu_x, sigma_x^2).
Trained by the ELBO with one latent sample (section 3.3). Score (section 3.4): the negative
reconstruction log-likelihood -log p(x_t | z_t) per metric (reduction ``mean``). The paper
averages it over latent samples; here the posterior means are propagated instead, so that a
score is deterministic, which the stream's deterministic event ids need.
Defaults are smaller than the paper's (window 100, GRU 500, 20 flows) so that one ASD server
trains in about a minute on two CPU cores.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from omnistream.detectors.neural import NeuralConfig, NeuralDetector, Standardise



class OmniAnomalyConfig(NeuralConfig):
    window: int = Field(32, ge=2, description="points per window (the paper uses 100)")
    train_stride: int = 2
    hidden: int = Field(64, ge=1, description="units of the encoder and decoder GRUs (the paper: 500)")
    latent: int = Field(3, ge=1, description="latent dimensions per time step (the paper: 3)")
    flows: int = Field(4, ge=0, description="planar normalizing flows in the posterior (the paper: 20)")
    epochs: int = 20


class PlanarFlow(nn.Module):
    """f(z) = z + u_hat tanh(w.z + b), u_hat constrained so that f is invertible (Rezende &
    Mohamed 2015, appendix A.1); returns (f(z), log |det df/dz|)."""

    def __init__(self, dim: int):
        super().__init__()
        self.u = nn.Parameter(torch.randn(dim) * 0.01)
        self.w = nn.Parameter(torch.randn(dim) * 0.01)
        self.b = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wu = (self.w * self.u).sum()
        u_hat = self.u + (F.softplus(wu) - 1 - wu) * self.w / (self.w.pow(2).sum() + 1e-8)
        h = torch.tanh((z * self.w).sum(-1, keepdim=True) + self.b)
        log_det = torch.log((1 + ((1 - h**2) * self.w * u_hat).sum(-1)).abs() + 1e-8)
        return z + u_hat * h, log_det


class OmniAnomalyNet(nn.Module):
    def __init__(self, metrics: int, cfg: OmniAnomalyConfig):
        super().__init__()
        self.latent = cfg.latent
        self.encoder = nn.GRU(metrics, cfg.hidden, batch_first=True)
        self.q_hidden = nn.Linear(cfg.hidden + cfg.latent, cfg.hidden)
        self.q_mean = nn.Linear(cfg.hidden, cfg.latent)
        self.q_std = nn.Linear(cfg.hidden, cfg.latent)
        self.flows = nn.ModuleList([PlanarFlow(cfg.latent) for _ in range(cfg.flows)])
        self.transition = nn.Linear(cfg.latent, cfg.latent)  # the prior's A z_{t-1} + b
        self.prior_log_std = nn.Parameter(torch.zeros(cfg.latent))
        self.decoder = nn.GRU(cfg.latent, cfg.hidden, batch_first=True)
        self.x_mean = nn.Linear(cfg.hidden, metrics)
        self.x_std = nn.Linear(cfg.hidden, metrics)

    def posterior(self, x: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, W, L) after the flows, and log q(z) (B, W) (zero when not sampling)."""
        e, _ = self.encoder(x)
        z_prev = torch.zeros(x.size(0), self.latent, dtype=x.dtype, device=x.device)
        zs: list[torch.Tensor] = []
        log_qs: list[torch.Tensor] = []
        for t in range(x.size(1)):
            h = F.relu(self.q_hidden(torch.cat([e[:, t], z_prev], dim=-1)))
            mean, std = self.q_mean(h), F.softplus(self.q_std(h)) + 1e-4
            if sample:
                noise = torch.randn_like(mean)
                z = mean + std * noise
                log_q = (-0.5 * noise**2 - torch.log(std) - 0.9189385332046727).sum(-1)
            else:
                z, log_q = mean, torch.zeros(x.size(0), dtype=x.dtype, device=x.device)
            for flow in self.flows:
                z, log_det = flow(z)
                log_q = log_q - log_det
            zs.append(z)
            log_qs.append(log_q)
            z_prev = z
        return torch.stack(zs, 1), torch.stack(log_qs, 1)

    def reconstruct(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, _ = self.decoder(z)
        return self.x_mean(d), F.softplus(self.x_std(d)) + 1e-4

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        z_prev = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)
        mean, log_std = self.transition(z_prev), self.prior_log_std
        return (-0.5 * ((z - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.9189385332046727).sum(-1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    # 0.9189385332046727 = log(2 pi) / 2, a literal because TorchScript reads no globals
    return 0.5 * ((x - mean) / std) ** 2 + torch.log(std) + 0.9189385332046727


class ScoringModule(nn.Module):
    def __init__(self, net: OmniAnomalyNet, standardise: Standardise):
        super().__init__()
        self.net = net
        self.standardise = standardise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.standardise(x)
        z, _ = self.net.posterior(xn, False)
        mean, std = self.net.reconstruct(z)
        return gaussian_nll(xn, mean, std)


class OmniAnomaly(NeuralDetector):
    name = "omnianomaly"
    config_class = OmniAnomalyConfig
    paper = "Su et al., OmniAnomaly, KDD 2019"
    reduction = "mean"

    def build(self, metrics: int) -> OmniAnomalyNet:
        return OmniAnomalyNet(metrics, self.config)

    def loss(self, batch: torch.Tensor, epoch: int) -> torch.Tensor:
        """Negative ELBO per element: -(log p(x|z) + log p(z) - log q(z)) with one sample."""
        z, log_q = self.net.posterior(batch, True)
        mean, std = self.net.reconstruct(z)
        elbo = -gaussian_nll(batch, mean, std).sum(-1) + self.net.log_prior(z) - log_q
        return -elbo.mean() / batch.size(2)

    def scoring_module(self) -> ScoringModule:
        return ScoringModule(*self.frozen_copy())
