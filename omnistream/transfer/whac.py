"""W-HAC: weighted hierarchical agglomerative clustering of entity segments (OmniTransfer
section 4.3.1).

Periodic weights PW = P^-alpha from CMND averaged over entities; every segment aligned to
the pivot (eq. 3) by weighted NCC (eq. 5-7); weighted Euclidean distances (eq. 4) through the
kernel facade; average-linkage HAC from scipy. The number of clusters is the one with the
best mean silhouette on the dendrogram's cuts (or a fixed count). Above ``direct_limit``
segments the n^2/2 distance matrix is not built: a seeded sample is clustered and every
segment is assigned to its nearest centroid (the two-level scheme), so memory stays bounded
whatever the number of entities.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from omnistream import kernels
from omnistream.transfer.registry import ClusterRegistry, SegmentSettings
from omnistream.transfer.segments import interpolate_missing, zscored

log = logging.getLogger(__name__)


class ClusterConfig(BaseModel):
    """Settings of ``omnistream cluster``; defaults follow the paper's section 5.1."""

    model_config = ConfigDict(extra="forbid")
    segment_length: int = Field(60, ge=4, description="points per segment (n)")
    baseline_window: int = Field(12, ge=1, description="moving-average length of the baseline")
    drop: float = Field(0.05, ge=0, lt=1, description="share of extreme points dropped from the baseline")
    alpha: float = Field(1.0, ge=0, description="PW = P^-alpha: how much periodic metrics outweigh the rest "
                                                "(0 = uniform weights)")
    align: bool = Field(True, description="phase-align segments to the pivot by weighted NCC")
    max_period: int = Field(288, ge=2, description="longest period (points) CMND looks for")
    periodicity_points: int = Field(2000, ge=8, description="points per entity CMND reads")
    periodicity_entities: int = Field(200, ge=1, description="entities (a seeded sample) P is averaged over")
    clusters: int = Field(0, ge=0, description="fixed number of clusters; 0 = best mean silhouette")
    max_clusters: int = Field(12, ge=2, description="most clusters the silhouette rule considers")
    min_cluster_share: float = Field(0.02, ge=0, lt=0.5, description="smaller clusters join their nearest "
                                                                     "large one (average linkage's outliers)")
    direct_limit: int = Field(8000, ge=10, description="most segments clustered directly (n^2/2 distances); "
                                                     "beyond, a sample is clustered and the rest assigned")
    nearest: int = Field(20, ge=1, description="segments kept nearest each centroid (base-model training data)")
    seed: int = 0

    def segment_settings(self) -> SegmentSettings:
        return SegmentSettings(self.segment_length, self.baseline_window, self.drop, self.alpha, self.align)


Progress = Callable[[str], None]


def periodic_weights(series: list[np.ndarray], config: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """(P, PW) of the metrics: CMND at each metric's best period, averaged over a sample of
    entities (section 4.3.1, periodic weights)."""
    rng = np.random.default_rng(config.seed)
    pick = rng.choice(len(series), size=min(len(series), config.periodicity_entities), replace=False)
    length = min(config.periodicity_points, min(series[i].shape[0] for i in pick))
    top = min(config.max_period, length // 2)
    if top < 2:
        return np.ones(series[0].shape[1]), np.ones(series[0].shape[1])
    stack = np.stack([zscored(series[i][:length]).T for i in sorted(pick)])  # (E, M, T)
    p = kernels.periodicity(stack, list(range(2, top + 1)))
    return p, kernels.periodic_weights(p, config.alpha)


def silhouette(d: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a labelling given the square distance matrix (singletons count 0)."""
    ids, labels = np.unique(labels, return_inverse=True)
    if len(ids) < 2:
        return -1.0
    onehot = np.zeros((len(labels), len(ids)))
    onehot[np.arange(len(labels)), labels] = 1.0
    sizes = onehot.sum(axis=0)
    sums = d @ onehot  # (n, k) total distance of each segment to each cluster
    own = sizes[labels]
    a = sums[np.arange(len(labels)), labels] / np.maximum(own - 1, 1)
    sums[np.arange(len(labels)), labels] = np.inf
    b = (sums / sizes).min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def merge_small(d: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Labels 0..k-1 where clusters smaller than ``min_size`` (average linkage's outliers)
    join the large cluster they are closest to on average."""
    ids, labels = np.unique(labels, return_inverse=True)
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes >= min_size)
    if len(big) == 0:
        return np.zeros_like(labels)
    onehot = (labels[:, None] == big[None, :]).astype(d.dtype)
    mean_to_big = (d @ onehot) / sizes[big]
    merged = np.where(np.isin(labels, big), labels, big[mean_to_big.argmin(axis=1)])
    return np.unique(merged, return_inverse=True)[1]


def hac(segments: np.ndarray, weights: np.ndarray, config: ClusterConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Average-linkage HAC of aligned segments -> (labels 0..k-1, linkage, rule info).

    Average linkage isolates outlying segments in tiny clusters early; a cut's clusters smaller
    than ``min_cluster_share`` of the segments are merged into their nearest large cluster
    before the silhouette of the cut is measured.
    """
    d = kernels.weighted_sq_dist(segments, segments, weights)
    np.maximum(d, 0.0, out=d)
    np.sqrt(d, out=d)
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(d, checks=False), method="average")
    min_size = max(2, int(np.ceil(config.min_cluster_share * len(segments))))
    if config.clusters:
        labels = merge_small(d, fcluster(z, config.clusters, criterion="maxclust"), min_size)
        return labels, z, {"rule": "fixed count, small clusters merged", "clusters": int(labels.max()) + 1}
    scores: dict[int, float] = {}
    best: tuple[float, np.ndarray] | None = None
    cut = 2
    while len(scores) < config.max_clusters - 1 and cut <= min(len(segments) - 1, 4 * config.max_clusters):
        labels = merge_small(d, fcluster(z, cut, criterion="maxclust"), min_size)
        cut += 1
        k = int(labels.max()) + 1
        if k < 2 or k in scores:
            continue
        scores[k] = silhouette(d, labels)
        if best is None or scores[k] > best[0]:
            best = (scores[k], labels)
    labels = best[1] if best else np.zeros(len(segments), dtype=np.int64)
    return labels, z, {"rule": f"best mean silhouette, clusters under {min_size} segments merged",
                       "silhouette": {str(c): round(s, 4) for c, s in sorted(scores.items())}}


def cluster_entities(data: dict[str, np.ndarray], metrics: list[str], config: ClusterConfig | None = None,
                     progress: Progress | None = None) -> ClusterRegistry:
    """Cluster the segments of every entity's history (T_e, M) into a registry."""
    config = config or ClusterConfig()
    say = progress or (lambda message: None)
    names = sorted(data)
    if not names:
        raise ValueError("no entities to cluster")
    widths = {data[n].shape[1] for n in names}
    if widths != {len(metrics)}:
        raise ValueError(f"every entity needs the same {len(metrics)} metrics; got widths {sorted(widths)}")
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(step: str) -> None:
        timings[step] = round(time.perf_counter() - started - sum(timings.values()), 3)
        say(f"{step}: {timings[step]:.2f} s")

    series = [interpolate_missing(data[n]) for n in names]
    p, weights = periodic_weights(series, config)
    lap("periodic weights")
    settings = config.segment_settings()
    parts, owners, starts = [], [], []
    for i, s in enumerate(series):
        if s.shape[0] < settings.length:
            log.warning("%s: %d points, fewer than one segment of %d: left out", names[i], s.shape[0], settings.length)
            continue
        seg, start = settings.segments(s)
        parts.append(seg.astype(np.float32))
        owners.append(np.full(len(seg), i, dtype=np.int32))
        starts.append(start)
    if not parts:
        raise ValueError(f"no entity has a full segment of {settings.length} points")
    segments, owner, start = np.concatenate(parts), np.concatenate(owners), np.concatenate(starts)
    del parts
    lap(f"baselines and {len(segments)} segments")
    rng = np.random.default_rng(config.seed)
    sample = np.sort(rng.choice(len(segments), size=min(len(segments), config.direct_limit), replace=False))
    # Eq. 3 over the segments clustered directly: the pivot nearest their weighted mean is one of
    # the flattest segments (phases average out), and over all 400k segments of a 100k-entity
    # synthetic fleet the flattest one aligned the families worse (agreement 0.88, not 1.00).
    pivot = segments[sample[kernels.pivot(segments[sample], weights)]]
    if config.align:
        shift, _ = kernels.best_shift(pivot, segments, weights.astype(np.float32))
        segments = kernels.align(segments, shift)
    lap(f"alignment ({kernels.BACKEND_NAME} kernels{f', {kernels.KERNEL_TARGET}' if kernels.KERNEL_TARGET else ''})"
        if config.align else "no alignment (ablation)")
    labels_sample, z, rule = hac(segments[sample], weights, config)
    k = int(labels_sample.max()) + 1
    lap(f"HAC of {len(sample)} segments into {k} clusters")
    centroids = np.stack([segments[sample][labels_sample == c].mean(axis=0) for c in range(k)])
    if len(sample) == len(segments):
        labels = labels_sample
        distance = kernels.weighted_sq_dist(segments, centroids, weights)[np.arange(len(segments)), labels]
    else:
        labels, distance = kernels.assign_nearest(segments, centroids, weights)
        lap(f"assignment of {len(segments) - len(sample)} more segments")
    nearest = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        keep = members[np.argsort(distance[members], kind="stable")[: config.nearest]]
        nearest.append([(names[owner[i]], int(start[i])) for i in keep])
    votes = np.bincount(owner.astype(np.int64) * k + labels, minlength=len(names) * k).reshape(len(names), k)
    entities = {name: int(votes[i].argmax()) for i, name in enumerate(names) if votes[i].any()}
    info = {**rule, "periodicity": [round(float(v), 4) for v in p], "backend": kernels.BACKEND_NAME,
            "kernel_target": kernels.KERNEL_TARGET, "segments": int(len(segments)),
            "clustered_directly": int(len(sample)), "timings_s": timings,
            "config": config.model_dump()}
    return ClusterRegistry(settings, list(metrics), weights, pivot.astype(np.float64), centroids.astype(np.float64),
                           nearest, np.bincount(labels, minlength=k).tolist(), entities,
                           time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), info, z)
