"""References of the numeric kernels, shared by the tests and the benchmarks (as stumpy's
naive references are):

- ``naive_*``: written straight from the equations (OmniTransfer eqs. 2-7) with explicit loops,
  one value at a time: slow, obvious, and the truth every backend is tested against;
- ``FASTEST_NUMPY``: for each kernel, the NumPy formulations known here (BLAS GEMM for
  distances and NCC, FFT for NCC and CMND, vectorised baseline): the fastest of them in a run
  is the bar the C++ and numba backends are measured against, so that a speed-up is never
  quoted against a naive loop.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft

from omnistream.kernels import numpy_twin


def naive_baseline(row: np.ndarray, window: int, drop: float) -> np.ndarray:
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


def naive_cmnd(u: np.ndarray, tau: int) -> float:
    u = u.astype(np.float64)
    d = [float(np.sum((u[: u.size - j] - u[j:]) ** 2)) for j in range(1, tau + 1)]
    denom = sum(d) / tau
    return d[-1] / denom if denom > 0 else 1.0


def naive_weighted_sq_dist(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    a, b, w = (np.asarray(v, dtype=np.float64) for v in (a, b, w))
    return float(np.sum((a - b) ** 2 * w[:, None]))


def naive_weighted_ncc(ref: np.ndarray, seg: np.ndarray, w: np.ndarray, shift: int) -> float:
    ref, seg, w = (np.asarray(v, dtype=np.float64) for v in (ref, seg, w))
    rolled = np.roll(seg, shift, axis=-1)
    total = 0.0
    for j in range(ref.shape[0]):
        norm = np.linalg.norm(ref[j]) * np.linalg.norm(rolled[j])
        if np.isfinite(norm) and norm > 0:  # a zero row, or one with a NaN or inf, contributes 0
            total += float(np.sum(ref[j] * rolled[j]) * w[j] / norm)
    return total


def ncc_fft(ref: np.ndarray, segments: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted NCC (eq. 6) through the real FFT (scipy.fft: NumPy's pocketfft, with threads
    from ``scipy.fft.set_workers``): circular cross-correlation, one inverse per segment."""
    n = ref.shape[-1]
    out_dtype = segments.dtype
    ref, segments, w = (np.asarray(v, dtype=np.float64) for v in (ref, segments, w))
    ref_norm = np.linalg.norm(ref, axis=-1, keepdims=True)
    seg_norm = np.linalg.norm(segments, axis=-1, keepdims=True)
    ref_unit = np.divide(ref * w[:, None], ref_norm, out=np.zeros(ref.shape), where=numpy_twin.usable(ref_norm))
    seg_unit = np.divide(segments, seg_norm, out=np.zeros(segments.shape), where=numpy_twin.usable(seg_norm))
    spectrum = (scipy.fft.rfft(ref_unit, axis=-1)[None] * np.conj(scipy.fft.rfft(seg_unit, axis=-1))).sum(axis=1)
    return scipy.fft.irfft(spectrum, n=n, axis=-1).astype(out_dtype)


def cmnd_fft(x: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """CMND (eq. 2) with every d(tau) from one autocorrelation, as in YIN: d(tau) = sum of u^2
    over i < L - tau, plus over i >= tau, minus 2 acf(tau), the acf by a real FFT zero-padded to
    the next fast size >= L + max tau (no lag wraps; scipy.fft, threads from set_workers).
    O(L log L) per series instead of O(L tau). Its cancellation leaves ~1e-12 where d is 0, so
    a constant series is not reliably 1: a speed bar, not the fallback."""
    u = np.asarray(x, dtype=np.float64)
    length, max_tau = u.shape[-1], int(np.max(periods))
    size = scipy.fft.next_fast_len(length + max_tau, real=True)
    spectrum = scipy.fft.rfft(u, n=size, axis=-1)
    acf = scipy.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=-1)[:, 1:max_tau + 1]
    energy = np.cumsum(u * u, axis=-1)
    taus = np.arange(1, max_tau + 1)
    d = np.maximum(energy[:, length - 1 - taus] + energy[:, -1:] - energy[:, taus - 1] - 2.0 * acf, 0.0)
    cum = np.cumsum(d, axis=1)
    denom = cum[:, periods - 1] / periods
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, d[:, periods - 1] / denom, 1.0)


def streaming_pass(x: np.ndarray, threads: int = 1) -> float:
    """One read of ``x`` by ``threads`` threads (NumPy's sum releases the GIL), each summing a
    contiguous share: the floor under any kernel that must look at all of it."""
    shares = np.array_split(x.reshape(len(x), -1), max(1, threads))
    if len(shares) == 1:
        return float(x.sum())
    with ThreadPoolExecutor(len(shares)) as pool:
        return float(sum(pool.map(np.sum, shares)))


# kernel -> {formulation: function with the backends' signature}; the fastest is measured per run.
FASTEST_NUMPY: dict[str, dict[str, Callable]] = {
    "weighted_ncc": {"numpy_gemm": numpy_twin.weighted_ncc, "numpy_fft": ncc_fft},
    "weighted_sq_dist": {"numpy_gemm": numpy_twin.weighted_sq_dist},
    "baseline": {"numpy": numpy_twin.baseline},
    "cmnd": {"numpy": numpy_twin.cmnd, "numpy_fft": cmnd_fft},
}
