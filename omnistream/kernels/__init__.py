"""The numeric kernels of W-HAC (OmniTransfer section 4.3.1) behind one facade.

Backends, first available wins: the C++ extension (GIL released; the copy compiled for the
best instruction-set target the CPU runs, ``kernels.targets``), its numba twins, then
vectorised NumPy. ``OMNISTREAM_KERNELS=cpp|numba|numpy`` forces one. ``BACKEND_NAME`` says
which runs, ``KERNEL_TARGET`` which C++ target (None for the others) and ``BACKEND_REASON``
why; a fallback is logged as a warning.
Definitions shared by all backends:

- ``baseline``: per series, drop the floor(drop * m) finite points farthest from the mean
  (ties by position), fill them and missing points by linear interpolation, then a trailing
  moving average of ``window`` points.
- ``cmnd``: cumulative mean normalised difference d(tau) / mean_{j<=tau} d(j) (eq. 2).
- ``periodicity`` / ``periodic_weights``: P = CMND at the best candidate period averaged
  over entities, and PW = P^-alpha.
- ``weighted_sq_dist``: sum_j PW_j sum_i (A - B)^2 for all pairs (eq. 4), GEMM identity on
  NumPy's BLAS for every backend; ``weighted_sq_dist_blocks`` sweeps all pairs in bounded blocks.
- ``weighted_ncc``: eq. 6 at every circular shift s in [0, n), the segment rolled right by s.
- ``best_shift`` / ``align``: eq. 7 and the roll that applies it.
- ``pivot``: eq. 3, the segment nearest the weighted mean; ``assign_nearest``: nearest centroid.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import ModuleType

import numpy as np

from omnistream.kernels import numpy_twin as kernels_numpy
from omnistream.kernels import targets

log = logging.getLogger(__name__)


def _load_backend() -> tuple[str, ModuleType, str]:
    """The backend, its module, and why it runs. A fallback is never silent: it is logged as a
    warning with the reason the faster backend could not load."""
    wanted = os.environ.get("OMNISTREAM_KERNELS", "").strip().lower()
    if wanted not in ("", "cpp", "numba", "numpy"):
        raise ValueError(f"OMNISTREAM_KERNELS must be cpp, numba or numpy, not {wanted!r}")
    if wanted:
        forced = f"OMNISTREAM_KERNELS={wanted}"
        if wanted == "cpp":
            core, why = targets.load()
            return "cpp", core, f"{forced}; {why}"
        if wanted == "numba":
            from omnistream.kernels import numba_twin as kernels_numba

            return "numba", kernels_numba, forced
        return "numpy", kernels_numpy, forced
    failures = []
    try:
        core, why = targets.load()
        return "cpp", core, f"the C++ extension loaded; {why}"
    except ImportError as exc:
        failures.append(f"the C++ extension omnistream._core did not load ({exc})")
    try:
        from omnistream.kernels import numba_twin as kernels_numba

        name, module = "numba", kernels_numba
    except ImportError as exc:
        failures.append(f"numba did not load ({exc})")
        name, module = "numpy", kernels_numpy
    reason = "; ".join(failures)
    log.warning("kernels run on %s, slower: %s", name, reason)
    return name, module, reason


BACKEND_NAME, _backend, BACKEND_REASON = _load_backend()
KERNEL_TARGET: str | None = getattr(_backend, "TARGET", None)
# Elements of the largest intermediate (distance rows, NCC rows) the blocked kernels hold.
BLOCK_ELEMENTS = 1 << 24


def _float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _contiguous(x: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=dtype)


def baseline(x: np.ndarray, window: int = 12, drop: float = 0.05) -> np.ndarray:
    """Robust baseline along the last axis of ``x`` (any leading shape)."""
    x = _float(x)
    if window < 1 or not 0.0 <= drop < 1.0:
        raise ValueError("baseline: window must be >= 1 and drop in [0, 1)")
    flat = _contiguous(x.reshape(-1, x.shape[-1]))
    return _backend.baseline(flat, int(window), float(drop)).reshape(x.shape)


def cmnd(x: np.ndarray, periods: list[int] | np.ndarray) -> np.ndarray:
    """CMND along the last axis at each period -> shape ``x.shape[:-1] + (len(periods),)``."""
    x = _float(x)
    periods = np.asarray(periods, dtype=np.int64).reshape(-1)
    if periods.size == 0 or periods.min() < 1 or periods.max() >= x.shape[-1]:
        raise ValueError(f"cmnd: periods must be in [1, {x.shape[-1]}), got {periods.tolist()}")
    flat = _contiguous(x.reshape(-1, x.shape[-1]))
    return _backend.cmnd(flat, periods).reshape(x.shape[:-1] + (periods.size,))


def periodicity(x: np.ndarray, periods: list[int]) -> np.ndarray:
    """P (metrics,): each metric's CMND at its best candidate period, averaged over entities.

    ``x`` is (entities, metrics, time); smaller means more periodic.
    """
    x = _float(x)
    if x.ndim != 3:
        raise ValueError("periodicity: x must be (entities, metrics, time)")
    return cmnd(x, periods).min(axis=-1).mean(axis=0)


def periodic_weights(p: np.ndarray, alpha: float = 1.0, eps: float = 1e-6) -> np.ndarray:
    """PW = P^-alpha (P floored at ``eps``): strongly periodic metrics weigh more."""
    return np.maximum(np.asarray(p, dtype=np.float64), eps) ** -float(alpha)


def _flatten_segments(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = _float(a), _float(b)
    dtype = np.result_type(a.dtype, b.dtype)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:] or np.shape(w) != (a.shape[1],):
        raise ValueError("segments must be (count, metrics, time) with matching shapes and w (metrics,)")
    w_flat = np.repeat(np.asarray(w, dtype=dtype), a.shape[2])
    return (_contiguous(a.reshape(a.shape[0], -1), dtype), _contiguous(b.reshape(b.shape[0], -1), dtype), w_flat)


def weighted_sq_dist(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted squared Euclidean distances between segment sets a (na, m, n) and b (nb, m, n).

    Every backend runs the GEMM identity on NumPy's BLAS: the cross term is a GEMM and no
    hand-written one (C++ or numba) came near an optimised BLAS (0.54x in float64, 0.28x in
    float32 at 2000 x 2280; bench/kernels.py)."""
    a_flat, b_flat, w_flat = _flatten_segments(a, b, w)
    return kernels_numpy.weighted_sq_dist(a_flat, b_flat, w_flat)


def weighted_sq_dist_blocks(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """All pairs of ``weighted_sq_dist`` as (first row, block of rows of a against all of b),
    ``BLOCK_ELEMENTS // len(b)`` rows at a time: memory stays bounded at any count."""
    a_flat, b_flat, w_flat = _flatten_segments(a, b, w)
    b_norms = kernels_numpy.weighted_norms(b_flat, w_flat)
    rows = max(1, BLOCK_ELEMENTS // max(1, len(b_flat)))
    for i in range(0, len(a_flat), rows):
        yield i, kernels_numpy.weighted_sq_dist(a_flat[i:i + rows], b_flat, w_flat, b_norms)


def _ncc_inputs(ref: np.ndarray, segments: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    segments = _float(segments)
    dtype = segments.dtype
    ref = _contiguous(ref, dtype)
    if segments.ndim != 3 or ref.shape != segments.shape[1:] or np.shape(w) != (ref.shape[0],) or 0 in ref.shape:
        raise ValueError("weighted_ncc: ref must be (m, n) with m, n >= 1, segments (count, m, n) and w (m,)")
    return ref, _contiguous(segments), _contiguous(w, dtype)


def weighted_ncc(ref: np.ndarray, segments: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted NCC of each segment against ``ref`` at every circular shift -> (count, n)."""
    return _backend.weighted_ncc(*_ncc_inputs(ref, segments, w))


def best_shift(ref: np.ndarray, segments: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shift, ncc) of the best circular shift of each segment onto ``ref`` (first on ties).

    C++ keeps a running maximum per segment (O(count) memory beyond the input); the twins take
    ``BLOCK_ELEMENTS // (m n)`` segments at a time, whose unit copies and NCC they hold."""
    ref, segments, w = _ncc_inputs(ref, segments, w)
    if BACKEND_NAME == "cpp":
        return _backend.best_shift(ref, segments, w)
    count, m, n = segments.shape
    shift, value = np.empty(count, np.int64), np.empty(count, segments.dtype)
    step = max(1, BLOCK_ELEMENTS // (m * n))
    for i in range(0, count, step):
        ncc = _backend.weighted_ncc(ref, segments[i:i + step], w)
        shift[i:i + len(ncc)] = ncc.argmax(axis=1)
        value[i:i + len(ncc)] = ncc[np.arange(len(ncc)), shift[i:i + len(ncc)]]
    return shift, value


def align(segments: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Roll each segment (count, m, n) right by its shift along time."""
    segments = _contiguous(_float(segments))
    shift = _contiguous(shift, np.int64)
    if segments.ndim != 3 or shift.shape != (segments.shape[0],):
        raise ValueError("align: segments must be (count, m, n) and shift (count,)")
    return _backend.align(segments, shift)


def pivot(segments: np.ndarray, w: np.ndarray) -> int:
    """Index of the segment with the least total weighted distance to all others (eq. 3).

    With eq. 4's squared distance, sum_B |A - B|_w^2 = N |A - mean|_w^2 + sum_B |B - mean|_w^2,
    so the pivot is the segment nearest the weighted mean: O(N) work, not N^2 distances."""
    x = _float(segments)
    if x.ndim != 3 or np.shape(w) != (x.shape[1],):
        raise ValueError("pivot: segments must be (count, m, n) and w (m,)")
    flat = x.reshape(len(x), -1)
    w_flat = np.repeat(np.asarray(w, dtype=np.float64), x.shape[2])
    return int(kernels_numpy.weighted_norms(flat, w_flat, center=flat.mean(axis=0, dtype=np.float64)).argmin())


def assign_nearest(segments: np.ndarray, centroids: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, distance) of the nearest centroid for each segment, in bounded blocks."""
    idx, dist = np.empty(len(segments), np.int64), np.empty(len(segments))
    for i, d in weighted_sq_dist_blocks(segments, centroids, w):
        idx[i:i + len(d)] = d.argmin(axis=1)
        dist[i:i + len(d)] = d[np.arange(len(d)), idx[i:i + len(d)]]
    return idx, dist
