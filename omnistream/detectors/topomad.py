"""TopoMAD: a spatiotemporal deep learning approach for unsupervised anomaly detection in cloud
systems (He, Chen, Li, Zheng, IEEE TNNLS 2020; reference code IntelligentDDS/TopoMAD,
``graph_lstm_vae_ad_ver6``).

A stochastic seq2seq VAE over system windows (graphs.py: (B, W, N x M), node-major) whose LSTM
cells compute their gates with a graph convolution over the service topology:
``[i, f, o, g] = A (x_t || h_{t-1}) W + b`` with A the normalised adjacency (graphs.py), then
the usual LSTM update. The encoder (two such layers) reads the window; its last state gives a
Gaussian latent per node (per-node linear heads, as the reference); the last step is decoded
from the latent, and the earlier steps by a decoder of the same cells that starts from the
encoder's states and runs backwards in time, fed the true next point (teacher forcing). Each
step is decoded as a Gaussian (mean and standard deviation per node and metric); training
minimises its negative log-likelihood plus the latent's KL to N(0, I), on every window of the
history, anomalies included (the paper trains on contaminated data, without labels).

Score (causal, ``forward`` = the last step, (B, 1, N x M)): the negative log-likelihood of each
node's metrics at the window's last point under the decoding of the posterior mean (the reference
averages over latent samples; the mean keeps scores deterministic for the stream's event ids).
A node's score is the mean over its metrics, which ranks root-cause candidates.

Choices the paper or the reference code leave open, made here: the reparametrisation uses
exp(logvar / 2) (the reference multiplies by exp(logvar), which its KL term does not match);
the standard deviation is softplus + 1e-4 (the reference's unclamped log-variance can collapse);
the bias is added after the graph convolution, as in a GCN layer; teacher forcing always (the
reference decays its rate per epoch, which makes the validation loss depend on the epoch);
validation on the newest windows with the best weights kept (the reference validates on a random
30 % and keeps the last epoch); Adam with weight decay 1e-4 and gradients clipped to norm 5 (as
the reference). Per-metric standardisation of every (node, metric) column on training data only.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from omnistream.detectors.graphs import SystemConfig, SystemDetector, SystemNet
from omnistream.detectors.omnianomaly import gaussian_nll


class TopoMADConfig(SystemConfig):
    """The reference's defaults: window 30, two encoder and two decoder layers, 10 epochs, batch
    32; a state of 16 rather than its 5, for nodes of ~20 metrics."""

    window: int = Field(30, ge=2, description="points per window (the reference: 30)")
    hidden: int = Field(16, ge=1, description="state and latent size per node of each graph-LSTM layer")
    layers: int = Field(2, ge=1, description="graph-LSTM layers of the encoder and of the decoder")
    epochs: int = 10
    batch_size: int = 32
    patience: int = 10


class GraphLSTMCell(nn.Module):
    """One LSTM step whose gates are a graph convolution over the nodes."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.weight = nn.Linear(inputs + hidden, 4 * hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(4 * hidden))

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                graph: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gates = torch.matmul(graph, self.weight(torch.cat([x, h], dim=-1))) + self.bias  # (B, N, 4H)
        i, f, o, g = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class GraphLSTM(nn.Module):
    def __init__(self, inputs: int, hidden: int, layers: int):
        super().__init__()
        self.cells = nn.ModuleList([GraphLSTMCell(inputs if k == 0 else hidden, hidden) for k in range(layers)])

    def step(self, x: torch.Tensor, hs: list[torch.Tensor], cs: list[torch.Tensor],
             graph: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        new_h: list[torch.Tensor] = []
        new_c: list[torch.Tensor] = []
        inputs = x
        for k, cell in enumerate(self.cells):
            h, c = cell(inputs, hs[k], cs[k], graph)
            new_h.append(h)
            new_c.append(c)
            inputs = h
        return new_h, new_c


class NodeLinear(nn.Module):
    """A linear map of its own for every node: (B, N, I) -> (B, N, O)."""

    def __init__(self, nodes: int, inputs: int, outputs: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nodes, inputs, outputs) / inputs**0.5)
        self.bias = nn.Parameter(torch.zeros(nodes, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bni,nio->bno", x, self.weight) + self.bias


class TopoMADNet(SystemNet):
    def __init__(self, nodes: int, metrics: int, cfg: TopoMADConfig):
        super().__init__(nodes, metrics, cfg)
        self.hidden, self.layers = cfg.hidden, cfg.layers
        self.encoder = GraphLSTM(metrics, cfg.hidden, cfg.layers)
        self.latent_mean = NodeLinear(nodes, cfg.hidden, cfg.hidden)
        self.latent_logvar = NodeLinear(nodes, cfg.hidden, cfg.hidden)
        self.decoder = GraphLSTM(metrics, cfg.hidden, cfg.layers)
        self.out_mean = NodeLinear(nodes, cfg.hidden, metrics)
        self.out_std = NodeLinear(nodes, cfg.hidden, metrics)

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The encoder's last states (per layer, (B, N, H)) after reading x (B, W, N, M)."""
        zeros = torch.zeros(x.size(0), self.nodes, self.hidden, dtype=x.dtype, device=x.device)
        hs = [zeros for _ in range(self.layers)]
        cs = [zeros for _ in range(self.layers)]
        for t in range(x.size(1)):
            hs, cs = self.encoder.step(x[:, t], hs, cs, self.links)
        return hs, cs

    def emit(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (B, N, M) of a point decoded from a latent or a state."""
        return self.out_mean(state), F.softplus(self.out_std(state)) + 1e-4

    def last_point_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per node and metric NLL (B, N, M) of each window's last point, decoded from the
        posterior mean of its latent."""
        hs, _ = self.encode(x)
        mean, std = self.emit(self.latent_mean(hs[-1]))
        return gaussian_nll(x[:, -1], mean, std)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO of windows x (B, W, N, M) with one latent sample, per element."""
        hs, cs = self.encode(x)
        mu, logvar = self.latent_mean(hs[-1]), self.latent_logvar(hs[-1]).clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        mean, std = self.emit(z)
        nll = gaussian_nll(x[:, -1], mean, std).sum()
        for t in range(x.size(1) - 2, -1, -1):  # backwards, fed the true next point
            hs, cs = self.decoder.step(x[:, t + 1], hs, cs, self.links)
            mean, std = self.emit(hs[-1])
            nll = nll + gaussian_nll(x[:, t], mean, std).sum()
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()
        return (nll + kl) / x.numel()


class TopoMAD(SystemDetector):
    name = "topomad"
    config_class = TopoMADConfig
    paper = "He et al., TopoMAD, IEEE TNNLS 2020"
    reduction = "mean"
    network = TopoMADNet

    def optimizers(self, trainable: set[str]) -> list[torch.optim.Optimizer]:
        params = [p for n, p in self.net.named_parameters() if n in trainable]
        return [torch.optim.Adam(params, lr=self.config.learning_rate, weight_decay=1e-4)]

    def train_step(self, batch: torch.Tensor, epoch: int, optimizers: list[torch.optim.Optimizer]) -> float:
        loss = self.loss(batch, epoch)
        optimizers[0].zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        optimizers[0].step()
        return float(loss.item())
