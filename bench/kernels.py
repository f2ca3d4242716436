"""Kernel benchmark: C++ and numba against NumPy measured in the same run.

Prints seconds and speed-up ratios. The NumPy reference is eq. 6 written directly with
whole-array operations (one np.roll per shift, vectorised over segments and metrics);
the FFT NumPy fallback of the facade is shown beside it.

    python bench/kernels.py [--segments 10000] [--metrics 38] [--length 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from omnistream import _core
from omnistream.kernels import numba_twin as kernels_numba, numpy_twin as kernels_numpy


def ncc_numpy_reference(ref: np.ndarray, segments: np.ndarray, w: np.ndarray) -> np.ndarray:
    ref_unit = ref / np.linalg.norm(ref, axis=-1, keepdims=True) * w[:, None]
    seg_unit = segments / np.linalg.norm(segments, axis=-1, keepdims=True)
    n = ref.shape[-1]
    out = np.empty((segments.shape[0], n))
    for s in range(n):
        out[:, s] = np.einsum("jn,cjn->c", ref_unit, np.roll(seg_unit, s, axis=-1))
    return out


def sq_dist_numpy_reference(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.stack([(((a[i] - b) ** 2) * w).sum(axis=1) for i in range(a.shape[0])])


def baseline_numpy_reference(x: np.ndarray, window: int, drop: float) -> np.ndarray:
    return kernels_numpy.baseline(x, window, drop)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (numba compilation, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def report(name: str, timings: dict[str, float], reference: str) -> None:
    base = timings[reference]
    cells = "  ".join(f"{k}={v * 1e3:9.1f} ms ({base / v:6.1f}x)" for k, v in timings.items())
    print(f"{name:<18} {cells}   [ratios vs {reference}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=38)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    segs = rng.standard_normal((args.segments, args.metrics, args.length))
    ref = segs[0].copy()
    w = rng.uniform(0.1, 2.0, args.metrics)
    print(f"segments={args.segments} metrics={args.metrics} length={args.length} float64, best of {args.repeat}")

    got = {"cpp": _core.weighted_ncc(ref, segs, w), "numba": kernels_numba.weighted_ncc(ref, segs, w)}
    want = ncc_numpy_reference(ref, segs, w)
    for k, v in got.items():
        assert np.allclose(v, want, atol=1e-8), f"{k} NCC disagrees with the reference"
    report("weighted_ncc", {
        "numpy_ref": best_of(lambda: ncc_numpy_reference(ref, segs, w), args.repeat),
        "numpy_fft": best_of(lambda: kernels_numpy.weighted_ncc(ref, segs, w), args.repeat),
        "numba": best_of(lambda: kernels_numba.weighted_ncc(ref, segs, w), args.repeat),
        "cpp": best_of(lambda: _core.weighted_ncc(ref, segs, w), args.repeat),
    }, "numpy_ref")

    flat = segs[:2000].reshape(2000, -1)
    wf = np.repeat(w, args.length)
    report("weighted_sq_dist", {
        "numpy_ref": best_of(lambda: sq_dist_numpy_reference(flat, flat, wf), 1),
        "numpy_gemm": best_of(lambda: kernels_numpy.weighted_sq_dist(flat, flat, wf), args.repeat),
        "numba": best_of(lambda: kernels_numba.weighted_sq_dist(flat, flat, wf), args.repeat),
        "cpp": best_of(lambda: _core.weighted_sq_dist(flat, flat, wf), args.repeat),
    }, "numpy_ref")

    series = rng.standard_normal((args.metrics * 12, 8640))
    report("baseline", {
        "numpy": best_of(lambda: baseline_numpy_reference(series, 12, 0.05), args.repeat),
        "numba": best_of(lambda: kernels_numba.baseline(series, 12, 0.05), args.repeat),
        "cpp": best_of(lambda: _core.baseline(series, 12, 0.05), args.repeat),
    }, "numpy")

    periods = np.array([12, 288])
    short = series[:, :4000]
    report("cmnd", {
        "numpy": best_of(lambda: kernels_numpy.cmnd(short, periods), 1),
        "numba": best_of(lambda: kernels_numba.cmnd(short, periods), args.repeat),
        "cpp": best_of(lambda: _core.cmnd(short, periods), args.repeat),
    }, "numpy")


if __name__ == "__main__":
    main()
