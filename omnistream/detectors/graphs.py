"""What the system detectors share: a system window is the windows of its N entities side by
side, (B, W, N x M) node-major (node i's metrics are columns i*M .. i*M+M-1), so that the
entity contract (``fit``, ``score``, export, POT) holds unchanged; the call graph is part of the
detector's config and becomes a dense normalised adjacency buffer of the scoring module, which a
worker may overwrite when the topology changes (same nodes, other edges)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from omnistream.detectors.neural import NeuralConfig, NeuralDetector, Standardise


def normalised_adjacency(calls: np.ndarray, self_weight: float = 2.0) -> np.ndarray:
    """D^-1/2 (B + s I) D^-1/2 of the call graph ``calls`` (N, N; caller row, callee column): B
    links i and j when either calls the other (a fault spreads against the calls as well as
    along them), unweighted (call weights have no common scale across systems), s = 2 as in
    TopoMAD's reference code (GCN's "improved" self-loops), D the row sums of B + s I."""
    calls = np.asarray(calls, dtype=np.float64)
    linked = ((calls + calls.T) > 0).astype(np.float64)
    np.fill_diagonal(linked, 0.0)
    a = linked + self_weight * np.eye(len(calls))
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return (a * d[:, None] * d[None, :]).astype(np.float32)


class SystemConfig(NeuralConfig):
    nodes: int = Field(1, ge=1, description="entities of the system (windows carry nodes x metrics columns)")
    adjacency: list[list[float]] = Field([], description="calls between the nodes, N x N, caller row -> callee "
                                                         "column (weights > 0 link); empty: no known graph")
    use_graph: bool = Field(True, description="read the call graph; off, each node sees only itself (stdrift: "
                                              "its learned graph alone), to measure what the graph adds")
    centre: bool = Field(False, description="subtract each window's per-column median before the model reads it: "
                                            "a level that moved (a pod on another host) is normal again after half "
                                            "a window, and a fault is what changes within the window")

    @field_validator("adjacency")
    @classmethod
    def _square(cls, adjacency: list[list[float]]) -> list[list[float]]:
        if adjacency and any(len(row) != len(adjacency) for row in adjacency):
            raise ValueError("adjacency must be square (N x N)")
        if adjacency and not np.isfinite(np.asarray(adjacency, dtype=float)).all():
            raise ValueError("adjacency must be finite")
        return adjacency

    def graph(self) -> torch.Tensor:
        """The normalised adjacency (N, N) of the configured calls (the identity without them)."""
        if self.adjacency and len(self.adjacency) != self.nodes:
            raise ValueError(f"adjacency is {len(self.adjacency)} x {len(self.adjacency)} for {self.nodes} nodes")
        known = self.adjacency and self.use_graph
        calls = np.asarray(self.adjacency, dtype=np.float32) if known else np.zeros((self.nodes,) * 2)
        return torch.from_numpy(normalised_adjacency(calls))


def node_metrics(columns: int, nodes: int) -> int:
    """Metrics per node of a system window with ``columns`` columns."""
    if columns % nodes:
        raise ValueError(f"a system window of {nodes} nodes needs a multiple of {nodes} columns, got {columns}")
    return columns // nodes


class SystemNet(nn.Module):
    """A system network's common part: the call-graph buffer ``links`` and the (optionally centred) view of
    a window as nodes. Subclasses define ``last_point_scores`` and ``loss``."""

    def __init__(self, nodes: int, metrics: int, cfg: SystemConfig):
        super().__init__()
        self.nodes, self.metrics, self.centre = nodes, metrics, cfg.centre
        self.register_buffer("links", cfg.graph())  # "graph" would shadow TorchScript's own attribute

    def nodes_view(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W, N x M) -> (B, W, N, M), each column less its window median when centred."""
        if self.centre:
            x = x - x.median(dim=1, keepdim=True).values
        return x.reshape(x.size(0), x.size(1), self.nodes, self.metrics)


class SystemScoring(nn.Module):
    """Raw system windows (B, W, N x M) -> the last point's scores (B, 1, N x M)."""

    def __init__(self, net: nn.Module, standardise: Standardise):
        super().__init__()
        self.net = net
        self.standardise = standardise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.last_point_scores(self.net.nodes_view(self.standardise(x))).reshape(x.size(0), 1, -1)

    @torch.jit.export
    def score_last(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class SystemDetector(NeuralDetector):
    """A neural detector of system windows: its network is a SystemNet built from the config's
    nodes, and it scores the last point of each window (causal)."""

    input_kind: ClassVar[str] = "system"
    network: ClassVar[type[SystemNet]]

    def build(self, metrics: int) -> SystemNet:
        return self.network(self.config.nodes, node_metrics(metrics, self.config.nodes), self.config)

    def loss(self, batch: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.net.loss(self.net.nodes_view(batch))

    def scoring_module(self) -> SystemScoring:
        return SystemScoring(*self.frozen_copy())
