"""Pictures of a cluster registry: the dendrogram of the clustered segments, and each
cluster's centroid over its nearest segments on the most heavily weighted metrics."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.cluster.hierarchy import dendrogram

from omnistream.transfer.registry import ClusterRegistry


def plot_dendrogram(registry: ClusterRegistry, path: Path, leaves: int = 40) -> None:
    fig, ax = plt.subplots(figsize=(10, 4))
    if registry.linkage is not None and len(registry.linkage):
        dendrogram(registry.linkage, truncate_mode="lastp", p=leaves, ax=ax, no_labels=False,
                   color_threshold=registry.linkage[-(registry.count - 1), 2] if registry.count > 1 else 0)
    ax.set_title(f"W-HAC dendrogram (average linkage), {registry.count} clusters, "
                 f"{registry.info.get('clustered_directly', '?')} segments clustered")
    ax.set_ylabel("weighted Euclidean distance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_members(registry: ClusterRegistry, segments: dict[int, np.ndarray], path: Path, metrics: int = 3) -> None:
    """``segments``: per cluster, its nearest aligned segments (k, M, n)."""
    top = np.argsort(-registry.weights)[:metrics]
    fig, axes = plt.subplots(registry.count, len(top), figsize=(3.2 * len(top), 2.2 * registry.count),
                             squeeze=False, sharex=True)
    for c in range(registry.count):
        for col, j in enumerate(top):
            ax = axes[c, col]
            for seg in segments.get(c, np.empty((0,) + registry.centroids.shape[1:])):
                ax.plot(seg[j], color="0.7", lw=0.6)
            ax.plot(registry.centroids[c, j], color="C3", lw=1.6)
            if c == 0:
                ax.set_title(f"{registry.metrics[j]} (PW {registry.weights[j]:.2g})", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"cluster {c}\n{registry.sizes[c]} segments", fontsize=9)
    fig.suptitle("centroids (red) over their nearest aligned segments, most periodic metrics")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
