"""Vectorised NumPy versions of the numeric kernels: the last fallback of the facade.

Same definitions as csrc/kernels.hpp (see omnistream/kernels/__init__.py for them), written with
whole-array operations so that they stay usable when neither C++ nor numba is available.
"""

from __future__ import annotations

import numpy as np


def baseline(x: np.ndarray, window: int, drop: float) -> np.ndarray:
    rows, length = x.shape
    out = np.full((rows, length), np.nan, dtype=x.dtype)
    positions = np.arange(length)
    for r in range(rows):
        row = x[r].astype(np.float64)
        keep = np.isfinite(row)
        finite = int(keep.sum())
        if finite == 0:
            continue
        n_drop = int(np.floor(drop * finite))
        if n_drop:
            idx = np.flatnonzero(keep)
            dev = np.abs(row[idx] - row[idx].mean())
            keep[idx[np.argsort(-dev, kind="stable")[:n_drop]]] = False
        filled = np.interp(positions, positions[keep], row[keep])
        csum = np.cumsum(filled)
        csum[window:] = csum[window:] - csum[:-window]
        out[r] = csum / np.minimum(positions + 1, window)
    return out


def cmnd(x: np.ndarray, periods: np.ndarray) -> np.ndarray:
    u = x.astype(np.float64)
    max_tau = int(periods.max())
    d = np.stack([((u[:, :-tau] - u[:, tau:]) ** 2).sum(axis=1) for tau in range(1, max_tau + 1)], axis=1)
    cum = np.cumsum(d, axis=1)
    idx = periods - 1
    denom = cum[:, idx] / periods
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, d[:, idx] / denom, 1.0)


def weighted_norms(x: np.ndarray, w: np.ndarray, center: np.ndarray | float = 0.0) -> np.ndarray:
    """|x_i - center|_w^2 of every row in float64, in blocks of 2^20 values (8 MB temporaries)."""
    rows = max(1, (1 << 20) // max(1, x.shape[1]))
    return np.concatenate([np.square(x[i:i + rows] - center, dtype=np.float64) @ w.astype(np.float64)
                           for i in range(0, len(x), rows)]) if len(x) else np.zeros(0)


def weighted_sq_dist(a: np.ndarray, b: np.ndarray, w: np.ndarray, b_norms: np.ndarray | None = None) -> np.ndarray:
    """|a|_w^2 + |b|_w^2 - 2 <a w, b> for all row pairs, clamped at 0: one BLAS GEMM in the
    input's precision, the rest in place on its result. ``b_norms`` saves recomputing |b|_w^2
    when b is swept against many blocks of a."""
    nb = weighted_norms(b, w) if b_norms is None else b_norms
    out = (a * w) @ b.T
    out *= -2.0
    out += weighted_norms(a, w)[:, None].astype(out.dtype)
    out += nb[None, :].astype(out.dtype)
    return np.maximum(out, 0.0, out=out)


def usable(norm: np.ndarray) -> np.ndarray:
    """Rows with a finite, positive norm; the others (zero, or holding a NaN or an infinity)
    contribute 0 to the NCC in every backend."""
    return np.isfinite(norm) & (norm > 0)


def weighted_ncc(ref: np.ndarray, segments: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted NCC (eq. 6) at every circular shift as one BLAS GEMM: out[c, s] =
    sum_j sum_u unit(seg)[c, j, u] * w_j unit(ref)[j, (u + s) mod n], i.e. the unit segments
    (C, J n) times the stacked circulants of the weighted unit reference (J n, n)."""
    n = ref.shape[-1]
    ref, w = np.asarray(ref, dtype=np.float64), np.asarray(w, dtype=np.float64)
    ref_norm = np.linalg.norm(ref, axis=-1, keepdims=True)
    ref_w = np.divide(ref * w[:, None], ref_norm, out=np.zeros(ref.shape), where=usable(ref_norm))
    # Norms accumulate in float64, as the compiled backends do: float32 squares of values near
    # the smallest normal number underflow to zero and would turn a unit row into zeros.
    seg_norm = np.sqrt(np.einsum("cju,cju->cj", segments, segments, dtype=np.float64))[..., None]
    seg_unit = np.divide(segments, seg_norm, out=np.zeros(segments.shape, dtype=segments.dtype), where=usable(seg_norm))
    shifts = (np.arange(n)[:, None] + np.arange(n)[None, :]) % n
    circulants = ref_w[:, shifts].reshape(-1, n).astype(segments.dtype)
    return seg_unit.reshape(len(segments), -1) @ circulants


def align(segments: np.ndarray, shift: np.ndarray) -> np.ndarray:
    n = segments.shape[-1]
    idx = (np.arange(n)[None, :] - shift[:, None]) % n
    return np.take_along_axis(segments, idx[:, None, :], axis=-1)
