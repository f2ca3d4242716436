"""Kernel benchmark: C++ and numba against the fastest NumPy formulation of each kernel
(omnistream.kernels.reference.FASTEST_NUMPY: BLAS GEMM for NCC and distances, vectorised
baseline and CMND), measured in the same run, in float64 and float32. NCC is also set against
one streaming pass over its input (a NumPy sum): the floor of any kernel that reads it all.
Each thread count of ``--threads`` runs every backend with that many threads (C++ through
OMNISTREAM_THREADS, numba's pool and NumPy's BLAS through threadpoolctl), so ratios compare
equal thread counts and the rows show scaling.

    python bench/kernels.py [--segments 10000] [--metrics 38] [--length 60] [--repeat 3] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from omnistream import _core
from omnistream.kernels import numba_twin as kernels_numba
from omnistream.kernels.reference import FASTEST_NUMPY, streaming_pass


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (numba compilation, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def report(name: str, kernel: str, args: tuple, repeat: int, floor: float | None = None) -> None:
    """Time every NumPy formulation, numba and C++ on ``args``; ratios against the fastest NumPy."""
    timings = {label: best_of(lambda f=f: f(*args), repeat) for label, f in FASTEST_NUMPY[kernel].items()}
    best_label = min(timings, key=timings.get)
    best = timings[best_label]
    for label, module in (("numba", kernels_numba), ("cpp", _core)):
        if hasattr(module, kernel):  # weighted_sq_dist has none: every backend runs the BLAS formulation
            timings[label] = best_of(lambda m=module: getattr(m, kernel)(*args), repeat)
    cells = "  ".join(f"{k}={v * 1e3:8.1f} ms ({best / v:5.2f}x)" for k, v in timings.items())
    extra = f"  floor (one pass)={floor * 1e3:6.1f} ms, cpp at {timings['cpp'] / floor:4.1f}x it" if floor else ""
    print(f"{name:<26} {cells}   [ratios vs {best_label}]{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=38)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default=str(os.cpu_count() or 1), help="comma-separated thread counts")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"segments={args.segments} metrics={args.metrics} length={args.length}, best of {args.repeat}")
    segs64 = rng.standard_normal((args.segments, args.metrics, args.length))
    w = rng.uniform(0.1, 2.0, args.metrics)
    series64 = rng.standard_normal((args.metrics * 12, 8640))
    for threads in (int(t) for t in args.threads.split(",")):
        os.environ["OMNISTREAM_THREADS"] = str(threads)  # read by the C++ kernels at each call
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        with threadpool_limits(threads):
            print(f"-- {threads} thread(s)")
            run_all(args, segs64, w, series64)


def run_all(args: argparse.Namespace, segs64: np.ndarray, w: np.ndarray, series64: np.ndarray) -> None:
    for dtype in (np.float64, np.float32):
        tag = np.dtype(dtype).name
        segs = segs64.astype(dtype)
        ref = segs[0].copy()
        floor = best_of(lambda: streaming_pass(segs), args.repeat)
        report(f"weighted_ncc {tag}", "weighted_ncc", (ref, segs, w), args.repeat, floor)
        flat = segs[:2000].reshape(2000, -1)
        report(f"weighted_sq_dist {tag}", "weighted_sq_dist", (flat, flat, np.repeat(w, args.length).astype(dtype)),
               args.repeat)
        series = series64.astype(dtype)
        report(f"baseline {tag}", "baseline", (series, 12, 0.05), args.repeat)
        report(f"cmnd {tag}", "cmnd", (series[:, :4000], np.array([12, 288])), 1)


if __name__ == "__main__":
    main()
