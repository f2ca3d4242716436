"""Plain NumPy references of the numeric kernels, written straight from the equations
(OmniTransfer eqs. 2-7) with explicit loops: slow, obvious, and the truth the fast
backends are tested against."""

from __future__ import annotations

import numpy as np


def baseline(row: np.ndarray, window: int, drop: float) -> np.ndarray:
    row = row.astype(np.float64)
    positions = np.arange(row.size)
    finite = np.isfinite(row)
    if not finite.any():
        return np.full(row.size, np.nan)
    mean = row[finite].mean()
    n_drop = int(np.floor(drop * finite.sum()))
    candidates = sorted(positions[finite], key=lambda i: (-abs(row[i] - mean), i))
    keep = finite.copy()
    keep[candidates[:n_drop]] = False
    filled = np.interp(positions, positions[keep], row[keep])
    return np.array([filled[max(0, i - window + 1) : i + 1].mean() for i in positions])


def cmnd(u: np.ndarray, tau: int) -> float:
    u = u.astype(np.float64)
    d = [float(np.sum((u[: u.size - j] - u[j:]) ** 2)) for j in range(1, tau + 1)]
    denom = sum(d) / tau
    return d[-1] / denom if denom > 0 else 1.0


def weighted_sq_dist(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    a, b, w = (np.asarray(v, dtype=np.float64) for v in (a, b, w))
    return float(np.sum((a - b) ** 2 * w[:, None]))


def weighted_ncc(ref: np.ndarray, seg: np.ndarray, w: np.ndarray, shift: int) -> float:
    ref, seg, w = (np.asarray(v, dtype=np.float64) for v in (ref, seg, w))
    rolled = np.roll(seg, shift, axis=-1)
    total = 0.0
    for j in range(ref.shape[0]):
        norm = np.linalg.norm(ref[j]) * np.linalg.norm(rolled[j])
        if norm > 0:
            total += float(np.sum(ref[j] * rolled[j]) * w[j] / norm)
    return total
