"""A synthetic fleet of periodic entities in known families, for the clustering benchmarks at
scales no bundled dataset reaches (1k-100k entities) and for tests that need ground truth.

Family f has one period (as a fleet shares the daily cycle) and gives every metric its own
waveform; an entity of the family is that pattern with a random phase (shared by its
metrics), offset, scale and noise, so z-scoring and phase alignment are what make its
segments match its family's. Periods divide 60, the default segment length.
"""

from __future__ import annotations

import numpy as np

WAVES = ("sine", "square", "saw", "spike")


def _wave(kind: str, phase: np.ndarray) -> np.ndarray:
    cycle = np.mod(phase, 1.0)
    if kind == "sine":
        return np.sin(2 * np.pi * cycle)
    if kind == "square":
        return np.where(cycle < 0.5, 1.0, -1.0)
    if kind == "saw":
        return 2 * cycle - 1
    return np.where(cycle < 0.1, 3.0, 0.0)


def fleet(entities: int, points: int, metrics: int = 4, families: int = 3, noise: float = 0.2,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(series (entities, points, metrics) float32, family of each entity)."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(WAVES), size=(families, metrics))
    periods = rng.choice([20, 30, 60], size=families)
    family = rng.integers(0, families, size=entities)
    t = np.arange(points)
    out = np.empty((entities, points, metrics), dtype=np.float32)
    for f in range(families):
        members = np.flatnonzero(family == f)
        if not len(members):
            continue
        shift = rng.uniform(0, 1, size=(len(members), 1))
        for j in range(metrics):
            pattern = _wave(WAVES[kinds[f, j]], t[None, :] / periods[f] + shift)
            scale = rng.uniform(0.5, 5.0, size=(len(members), 1))
            offset = rng.uniform(-10, 10, size=(len(members), 1))
            out[members, :, j] = offset + scale * (pattern + noise * rng.standard_normal((len(members), points)))
    return out, family
