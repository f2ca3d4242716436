"""The dependency-drift-aware spatiotemporal model ("Adaptive AI Spatiotemporal Modeling with
Dependency Drift Awareness for Anomaly Detection in Large-Scale Clusters", 2025, section II;
its equations are unnumbered, E1-E6 below in their order).

Over system windows (graphs.py: (B, W, N x M), node-major):
- E1: each node's point is encoded, h_i(t) = f(x_i(t)) (a two-layer perceptron shared by the
  nodes, plus a learned embedding of the node);
- E2: multi-scale temporal representation h~_i(t) = sum_tau alpha_tau h_i(t - tau), causal
  weights per channel over the whole window, initialised as the mean of moving averages over 1,
  3 and W points (the local, short and long scales the paper names) and learned;
- E4: a time-dependent dependency graph A~_ij(t) = softmax_j g(h~_i(t), h~_j(t)), g a scaled
  dot product of learned projections (the paper leaves g open);
- E3: propagation z_i(t) = ReLU(sum_j A_ij(t) W_s h~_j(t)) over A(t) = beta A + (1 - beta) A~(t),
  A the normalised static call graph and beta a learned gate (0 without a call graph: the
  learned graph alone; the paper does not say how the two combine);
- E5: the joint embedding u_i(t) = W_t h~_i(t) + W_g z_i(t).
- E6, the score: s_i(t) = |u_i(t) - u-bar_i(t)|, the distance of the node's joint embedding from
  a reference state the paper leaves undefined. Here the reference is the expected state: the
  embedding of the same window with the last point replaced by its forecast from the points
  before it (a head maps u_i(t-1) to x^_i(t); the model trains by the mean squared error of these
  forecasts, which the paper also leaves open). The per-metric score of the last point is
  sqrt(r^2 / 2 + s^2 / 2), r the forecast residual of the metric and s its node's distance over
  its training RMS: a metric's own error plus its node's shift in the system's state, reduced
  by ``mean_sq``; a node's score (for root cause) the reduction of its metrics.
Deterministic: no dropout, no sampling.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from omnistream.detectors.graphs import SystemConfig, SystemDetector, SystemNet


class STDriftConfig(SystemConfig):
    """The paper's best window (12, its section III.B); the embedding size, epochs and batch
    are not given in the paper and are set small enough to train a 10-service system on two
    CPU cores in about a minute."""

    window: int = Field(12, ge=3, description="points per window (the paper's best: 12)")
    dim: int = Field(32, ge=2, description="embedding size per node")
    epochs: int = 30
    batch_size: int = 128


class STDriftNet(SystemNet):
    def __init__(self, nodes: int, metrics: int, cfg: STDriftConfig):
        super().__init__(nodes, metrics, cfg)
        self.dim = cfg.dim
        self.window = window = cfg.window
        self.register_buffer("has_static", torch.tensor(1.0 if cfg.adjacency and cfg.use_graph else 0.0))
        self.encoder = nn.Sequential(nn.Linear(metrics, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.node_embedding = nn.Parameter(torch.zeros(nodes, cfg.dim))
        taps = torch.zeros(window)
        spans = sorted({1, 3, window})
        for span in spans:
            taps[-span:] += 1.0 / (len(spans) * span)  # the newest point is the last tap
        self.temporal = nn.Parameter(taps.repeat(cfg.dim, 1).unsqueeze(1))  # (d, 1, W) depthwise
        self.query = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.key = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.gate = nn.Parameter(torch.zeros(1))
        self.spread = nn.Linear(cfg.dim, cfg.dim, bias=False)  # W_s
        self.own = nn.Linear(cfg.dim, cfg.dim)  # W_t
        self.neighbours = nn.Linear(cfg.dim, cfg.dim, bias=False)  # W_g
        self.forecast = nn.Linear(cfg.dim, metrics)
        self.register_buffer("distance_scale", torch.ones(nodes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Joint embeddings u (B, W, N, d) of windows x (B, W, N, M), each step from the steps
        up to it only."""
        b, w = x.size(0), x.size(1)
        h = self.encoder(x) + self.node_embedding  # E1
        series = h.permute(0, 2, 3, 1).reshape(b * self.nodes, self.dim, w)
        smooth = F.conv1d(F.pad(series, (self.window - 1, 0)), self.temporal, groups=self.dim)  # E2, causal
        h = smooth.reshape(b, self.nodes, self.dim, w).permute(0, 3, 1, 2)  # (B, W, N, d)
        affinity = torch.matmul(self.query(h), self.key(h).transpose(-1, -2)) / math.sqrt(self.dim)
        beta = torch.sigmoid(self.gate) * self.has_static
        graph = beta * self.links + (1 - beta) * torch.softmax(affinity, dim=-1)  # E4 with the call graph
        z = F.relu(torch.matmul(graph, self.spread(h)))  # E3
        return self.own(h) + self.neighbours(z)  # E5

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        u = self.embed(x)
        return ((self.forecast(u[:, :-1]) - x[:, 1:]) ** 2).mean()

    def last_step(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forecast residuals (B, N, M) of the last point, node distances (B, N) of E6)."""
        u = self.embed(x)
        expected = self.forecast(u[:, -2])
        residual = x[:, -1] - expected
        reference = self.embed(torch.cat([x[:, :-1], expected.unsqueeze(1)], dim=1))
        return residual, torch.linalg.vector_norm(u[:, -1] - reference[:, -1], dim=-1)

    def last_point_scores(self, x: torch.Tensor) -> torch.Tensor:
        residual, distance = self.last_step(x)
        shift = (distance / self.distance_scale).unsqueeze(-1)
        return torch.sqrt(0.5 * residual**2 + 0.5 * shift**2)


class STDrift(SystemDetector):
    name = "stdrift"
    config_class = STDriftConfig
    paper = "Adaptive AI spatiotemporal modeling with dependency drift awareness (2025)"
    reduction = "mean_sq"
    network = STDriftNet
    shared_layers = ("encoder.", "temporal")

    def after_fit(self, train: torch.Tensor, val: torch.Tensor) -> None:
        """Each node's E6 distance over its root mean square on the training windows."""
        distances = torch.cat([self.net.last_step(self.net.nodes_view(train[i:i + 1024]))[1]
                               for i in range(0, len(train), 1024)])
        self.net.distance_scale.copy_(distances.pow(2).mean(dim=0).sqrt().clamp_min(1e-6))
