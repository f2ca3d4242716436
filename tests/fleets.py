"""A synthetic fleet clustered into a registry with small DC-VAE base models: the set-up of
the transfer tests and of the end-to-end transfer test."""

from pathlib import Path

import numpy as np

from omnistream.transfer.base_models import fit_per_cluster
from omnistream.transfer.synthetic import fleet
from omnistream.transfer.whac import ClusterConfig, cluster_entities

METRICS = ["a", "b", "c", "d"]
SMALL_DCVAE = dict(window=16, channels=8, dilations=[1, 2, 4], epochs=4, batch_size=64)


def clustered_fleet(folder: Path, clustered: int, extra: int, seed: int) -> np.ndarray:
    """Cluster the first ``clustered`` entities of a fleet into ``folder`` with base models;
    return the whole fleet (clustered + extra, 800 points, len(METRICS) metrics)."""
    x, _ = fleet(clustered + extra, 800, metrics=len(METRICS), families=3, seed=seed)
    data = {f"e{i:02d}": x[i] for i in range(clustered)}
    cluster_entities(data, METRICS, ClusterConfig(max_period=100, nearest=8)).save(folder)
    fit_per_cluster("dcvae", folder, data, SMALL_DCVAE)
    return x
