"""The cluster registry W-HAC writes and the transfer service reads: segment settings,
periodic weights, pivot, centroids and the segments nearest each centroid.

Stored as a folder: ``clusters.json`` (settings, members, version) and ``clusters.npz``
(arrays), both written atomically, so a service never reads half a registry.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from omnistream import kernels
from omnistream.transfer.segments import baseline_series, slice_segments, zscored

JSON_NAME, ARRAYS_NAME = "clusters.json", "clusters.npz"


class RegistryError(ValueError):
    """A cluster registry that is missing, unreadable, or does not fit the data given."""


@dataclass
class SegmentSettings:
    """How raw history becomes segments (OmniTransfer section 4.3.1, section 5.1 defaults)."""

    length: int = 60  # points per segment (n)
    baseline_window: int = 12  # moving-average length of the baseline
    drop: float = 0.05  # share of extreme points replaced before averaging
    alpha: float = 1.0  # PW = P^-alpha
    align: bool = True  # phase-align segments to the pivot (eq. 5-7); off only for the ablation

    def segments(self, series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segments (count, M, length) of a raw series (T, M) and their start indices."""
        if series.shape[0] < self.length:
            raise RegistryError(f"{series.shape[0]} points are fewer than one segment of {self.length}")
        return slice_segments(baseline_series(zscored(series), self.baseline_window, self.drop), self.length)


@dataclass
class ClusterRegistry:
    settings: SegmentSettings
    metrics: list[str]
    weights: np.ndarray  # (M,) periodic weights PW
    pivot: np.ndarray  # (M, n) the segment every other is aligned to
    centroids: np.ndarray  # (C, M, n) mean aligned segment of each cluster
    nearest: list[list[tuple[str, int]]]  # per cluster: (entity, start) of the segments nearest its centroid
    sizes: list[int]  # segments per cluster
    entities: dict[str, int]  # entity -> the cluster most of its segments belong to
    version: str
    info: dict = field(default_factory=dict)  # how it was made: rule, scores, backend, timings
    linkage: np.ndarray | None = None  # scipy linkage of the clustered segments, for the dendrogram

    @property
    def count(self) -> int:
        return len(self.centroids)

    def align(self, segments: np.ndarray) -> np.ndarray:
        """Each segment rolled to its best weighted-NCC shift onto the pivot (eq. 5-7)."""
        if not self.settings.align:
            return segments
        shift, _ = kernels.best_shift(self.pivot, segments, self.weights)
        return kernels.align(segments, shift)

    def nearest_cluster(self, series: np.ndarray, metrics: list[str] | None = None) -> tuple[int, float]:
        """(cluster, distance) for a raw series (T, M): its aligned segments' mean weighted
        distance to each centroid (section 4.4, transfer preparations), smallest wins."""
        if metrics is not None and list(metrics) != self.metrics:
            raise RegistryError(f"metrics {list(metrics)} differ from the registry's {self.metrics}")
        if series.ndim != 2 or series.shape[1] != len(self.metrics):
            raise RegistryError(f"series must be (time, {len(self.metrics)} metrics), got {series.shape}")
        segments, _ = self.settings.segments(series)
        d = kernels.weighted_sq_dist(self.align(segments), self.centroids, self.weights).mean(axis=0)
        best = int(d.argmin())
        return best, float(d[best])

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"weights": self.weights, "pivot": self.pivot, "centroids": self.centroids}
        if self.linkage is not None:
            arrays["linkage"] = self.linkage
        tmp = folder / (ARRAYS_NAME + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, folder / ARRAYS_NAME)
        meta = {"settings": asdict(self.settings), "metrics": self.metrics, "version": self.version,
                "nearest": self.nearest, "sizes": self.sizes, "entities": self.entities, "info": self.info}
        tmp = folder / (JSON_NAME + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, folder / JSON_NAME)

    @classmethod
    def load(cls, folder: Path) -> ClusterRegistry:
        folder = Path(folder)
        try:
            meta = json.loads((folder / JSON_NAME).read_text())
            with np.load(folder / ARRAYS_NAME) as arrays:
                data = {k: arrays[k] for k in arrays.files}
        except (OSError, ValueError, KeyError) as exc:
            raise RegistryError(f"no readable cluster registry in {folder} ({exc}); run `omnistream cluster`") from exc
        return cls(SegmentSettings(**meta["settings"]), meta["metrics"], data["weights"], data["pivot"],
                   data["centroids"], [[(e, int(s)) for e, s in near] for near in meta["nearest"]], meta["sizes"],
                   meta["entities"], meta["version"], meta.get("info", {}), data.get("linkage"))
