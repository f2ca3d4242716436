"""Numba twins of the C++ kernels in csrc/kernels.hpp: same definitions, same results.

They serve when the C++ extension is missing and as a second, independent implementation
that the benchmarks compare against.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def baseline(x: np.ndarray, window: int, drop: float) -> np.ndarray:
    rows, length = x.shape
    out = np.empty((rows, length), dtype=x.dtype)
    for r in prange(rows):
        row = x[r]
        keep = np.isfinite(row)
        finite = keep.sum()
        if finite == 0:
            out[r, :] = np.nan
            continue
        mean = 0.0
        for i in range(length):
            if keep[i]:
                mean += row[i]
        mean /= finite
        n_drop = int(np.floor(drop * finite))
        if n_drop > 0:
            idx = np.nonzero(keep)[0]
            dev = np.abs(row[idx].astype(np.float64) - mean)
            # Farthest first, ties by position: stable sort of the negated deviation.
            order = np.argsort(-dev, kind="mergesort")
            for k in range(n_drop):
                keep[idx[order[k]]] = False
        filled = np.empty(length, dtype=np.float64)
        prev = -1
        for i in range(length + 1):
            if i < length and not keep[i]:
                continue
            if i < length:
                filled[i] = row[i]
            for g in range(prev + 1, i):
                if prev < 0:
                    filled[g] = row[i]
                elif i == length:
                    filled[g] = row[prev]
                else:
                    t = (g - prev) / (i - prev)
                    filled[g] = row[prev] + t * (float(row[i]) - row[prev])
            prev = i
        acc = 0.0
        for i in range(length):
            acc += filled[i]
            if i >= window:
                acc -= filled[i - window]
            out[r, i] = acc / min(i + 1, window)
    return out


@njit(cache=True, parallel=True)
def cmnd(x: np.ndarray, periods: np.ndarray) -> np.ndarray:
    rows, length = x.shape
    max_tau = periods.max()
    out = np.empty((rows, periods.shape[0]), dtype=np.float64)
    for r in prange(rows):
        u = x[r].astype(np.float64)
        cum = np.zeros(max_tau + 1)
        running = 0.0
        for tau in range(1, max_tau + 1):
            diff = u[: length - tau] - u[tau:]
            running += np.dot(diff, diff)
            cum[tau] = running
        for p in range(periods.shape[0]):
            t = periods[p]
            denom = cum[t] / t
            out[r, p] = (cum[t] - cum[t - 1]) / denom if denom > 0.0 else 1.0
    return out


@njit(cache=True, parallel=True)
def weighted_ncc(ref: np.ndarray, segments: np.ndarray, w: np.ndarray) -> np.ndarray:
    count, m, n = segments.shape
    scaled = np.zeros((m, n))
    for j in range(m):
        norm = np.sqrt(np.dot(ref[j].astype(np.float64), ref[j].astype(np.float64)))
        if norm > 0.0 and np.isfinite(norm):
            scaled[j] = ref[j] * (w[j] / norm)
    out = np.empty((count, n), dtype=segments.dtype)
    for c in prange(count):
        acc = np.zeros(n)
        doubled = np.empty(2 * n)
        for j in range(m):
            row = segments[c, j].astype(np.float64)
            norm = np.sqrt(np.dot(row, row))
            if not (norm > 0.0 and np.isfinite(norm)):  # zero, NaN or inf in it: contributes 0, as in C++
                continue
            doubled[:n] = row / norm
            doubled[n:] = doubled[:n]
            for s in range(n):
                acc[s] += np.dot(scaled[j], doubled[n - s : 2 * n - s])
        out[c] = acc
    return out


@njit(cache=True, parallel=True)
def align(segments: np.ndarray, shift: np.ndarray) -> np.ndarray:
    count, m, n = segments.shape
    out = np.empty_like(segments)
    for c in prange(count):
        s = shift[c] % n
        for j in range(m):
            out[c, j, s:] = segments[c, j, : n - s]
            out[c, j, :s] = segments[c, j, n - s :]
    return out
