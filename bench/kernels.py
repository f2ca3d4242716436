"""Kernel benchmark: C++ and numba against the fastest NumPy formulation of each kernel
(omnistream.kernels.reference.FASTEST_NUMPY: BLAS GEMM and scipy.fft for NCC, BLAS GEMM for
distances, vectorised baseline, scipy.fft and direct CMND), measured in the same run, in
float64 and float32. NCC is also set against one streaming pass over its input (a NumPy sum
on as many threads): the floor of any kernel that reads it all.
Each thread count of ``--threads`` runs every backend with that many threads (C++ through
OMNISTREAM_THREADS, numba's pool and NumPy's BLAS through threadpoolctl, the FFT references
through scipy.fft.set_workers), so ratios compare equal thread counts and the rows show scaling.
GFLOP/s are those of the GEMM formulation run by NumPy's BLAS (C++ computes NCC by FFT where
the segment length allows, with several times fewer flops, so its time is what compares).

Every kernel target of ``--target`` (default: each one this CPU runs; omnistream.kernels.targets)
is measured in a process of its own, its C++ copy chosen with OMNISTREAM_KERNEL_TARGET, and NumPy
and OpenBLAS held to the same instruction set (NPY_DISABLE_CPU_FEATURES, OPENBLAS_CORETYPE), so
that each target is set against the NumPy a CPU of that kind would run (OpenBLAS's SkylakeX
kernels for avx512, Haswell's for avx2, Nehalem's for sse4, Core2's for sse2). NumPy cannot go
below its own baseline (x86-64-v2): the sse2 target meets NumPy at SSE4.2.

    python bench/kernels.py [--target avx512,avx2] [--segments 10000] [--metrics 38] [--length 60]
                            [--repeat 3] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from types import ModuleType

import numba
import numpy as np
import scipy.fft
from threadpoolctl import threadpool_info, threadpool_limits

from omnistream.kernels import numba_twin as kernels_numba
from omnistream.kernels import targets
from omnistream.kernels.reference import FASTEST_NUMPY, streaming_pass
from timing import best_of


@functools.cache
def cpp_kernels() -> tuple[ModuleType, str]:
    """This process's C++ kernels (the target OMNISTREAM_KERNEL_TARGET caps) and why, loaded once."""
    return targets.load()


def peak_gflops(threads: int, dtype: np.dtype, fma_units: int) -> tuple[float, str]:
    """The peak for ``threads`` cores at the kernel target's vector width: cores x SIMD lanes x
    FMA units x 2 flops x clock. The clock from the kernel's "cpu MHz" (the nominal clock: with
    boost the true peak is higher), FMA units per core as given (2 on current x86 server cores)."""
    info = open("/proc/cpuinfo").read()
    bits = 8 * cpp_kernels()[0].VECTOR_BYTES
    mhz = float(info.split("cpu MHz")[1].split(":")[1].split()[0])
    lanes = bits // (8 * np.dtype(dtype).itemsize)
    peak = threads * lanes * fma_units * 2 * mhz / 1e3
    return peak, f"{threads} x {lanes} lanes x {fma_units} FMA x 2 x {mhz / 1e3:.2f} GHz"


# OpenBLAS's kernels for a CPU of each target's kind (its DYNAMIC_ARCH core types), set for every
# target: OpenBLAS picks Haswell's on some AVX-512 CPUs (AMD's), and an inherited
# OPENBLAS_CORETYPE would hold it anywhere.
OPENBLAS_CORE = {"avx512": "SkylakeX", "avx2": "Haswell", "sse4": "Nehalem", "sse2": "Core2"}
CHILD = "OMNISTREAM_BENCH_TARGET_CHILD"


def numpy_features_above(target: str) -> list[str]:
    """NumPy's dispatched CPU features beyond ``target``: disabled to hold NumPy to it."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    def level(feature: str) -> int:
        if feature.startswith("AVX512") or feature == "X86_V4":
            return 3
        return 2 if feature in ("X86_V3", "AVX2", "FMA3", "AVX", "F16C") else 1

    limit = {"avx512": 3, "avx2": 2}.get(target, 1)
    return [f for f in __cpu_dispatch__ if level(f) > limit]


def target_environment(target: str) -> dict[str, str]:
    env = {**os.environ, targets.CAP_VARIABLE: target, CHILD: "1"}
    above = numpy_features_above(target)
    if above:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(above)
    if target in OPENBLAS_CORE:
        env["OPENBLAS_CORETYPE"] = OPENBLAS_CORE[target]
    return env


def report(name: str, kernel: str, args: tuple, repeat: int, floor: float | None = None,
           flops: float = 0.0, peak: float = 0.0) -> None:
    """Time every NumPy formulation, numba and C++ on ``args``; ratios against the fastest NumPy."""
    timings = {label: best_of(lambda f=f: f(*args), repeat) for label, f in FASTEST_NUMPY[kernel].items()}
    best_label = min(timings, key=timings.get)
    best = timings[best_label]
    for label, module in (("numba", kernels_numba), ("cpp", cpp_kernels()[0])):
        if hasattr(module, kernel):  # weighted_sq_dist has none: every backend runs the BLAS formulation
            timings[label] = best_of(lambda m=module: getattr(m, kernel)(*args), repeat)
    cells = "  ".join(f"{k}={v * 1e3:8.1f} ms ({best / v:5.2f}x)" for k, v in timings.items())
    extra = f"  floor (one pass)={floor * 1e3:6.1f} ms, cpp at {timings['cpp'] / floor:4.1f}x it" if floor else ""
    if flops:  # the flops of the GEMM formulation, so reported for NumPy's BLAS running it
        rate = flops / timings["numpy_gemm"] / 1e9
        extra += f"  numpy_gemm: {rate:6.1f} GFLOP/s ({rate / peak:4.0%} of peak)"
    print(f"{name:<26} {cells}   [ratios vs {best_label}]{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=38)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default=str(os.cpu_count() or 1), help="comma-separated thread counts")
    parser.add_argument("--fma-units", type=int, default=2, help="FMA units per core, for the peak")
    runnable = targets.runnable()
    parser.add_argument("--target", default=",".join(runnable),
                        help="comma-separated kernel targets [default: every one this CPU runs]")
    args = parser.parse_args()
    if not os.environ.get(CHILD):  # each target in a process of its own: NumPy reads its caps at import
        for target in args.target.split(","):
            if target not in runnable:
                parser.error(f"--target {target}: this CPU runs {', '.join(runnable)}")
            code = subprocess.call([sys.executable, __file__, *sys.argv[1:]], env=target_environment(target))
            if code:
                raise SystemExit(code)
        return
    core, why = cpp_kernels()
    blas = next((f"{i['internal_api']} {i['version']} ({i.get('architecture')} kernels)" for i in threadpool_info()
                 if i["user_api"] == "blas"), "unknown")
    print(f"=== kernel target {core.TARGET} ({why}); NumPy features disabled: "
          f"{os.environ.get('NPY_DISABLE_CPU_FEATURES') or 'none'}; BLAS: {blas}")
    rng = np.random.default_rng(0)
    print(f"segments={args.segments} metrics={args.metrics} length={args.length}, best of {args.repeat}")
    segs64 = rng.standard_normal((args.segments, args.metrics, args.length))
    w = rng.uniform(0.1, 2.0, args.metrics)
    series64 = rng.standard_normal((args.metrics * 12, 8640))
    # CMND as W-HAC calls it: its sample of 200 entities x the metrics, 2,000 points each
    periodicity64 = rng.standard_normal((200 * args.metrics, 2000))
    for threads in (int(t) for t in args.threads.split(",")):
        os.environ["OMNISTREAM_THREADS"] = str(threads)  # read by the C++ kernels at each call
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        with threadpool_limits(threads), scipy.fft.set_workers(threads):
            peak, how = peak_gflops(threads, np.float64, args.fma_units)
            print(f"-- {threads} thread(s); peak float64 {peak:.0f} GFLOP/s ({how})")
            run_all(args, segs64, w, series64, periodicity64, threads)


def run_all(args: argparse.Namespace, segs64: np.ndarray, w: np.ndarray, series64: np.ndarray,
            periodicity64: np.ndarray, threads: int) -> None:
    count, m, n = segs64.shape
    for dtype in (np.float64, np.float32):
        tag = np.dtype(dtype).name
        segs = segs64.astype(dtype)
        ref = segs[0].copy()
        floor = best_of(lambda segs=segs: streaming_pass(segs, threads), args.repeat)
        # NCC as a GEMM (count, m n) x (m n, n), in the input's precision
        report(f"weighted_ncc {tag}", "weighted_ncc", (ref, segs, w), args.repeat, floor,
               flops=2.0 * count * m * n * n, peak=peak_gflops(threads, dtype, args.fma_units)[0])
        pairs = min(2000, count)
        flat = segs[:pairs].reshape(pairs, -1)
        report(f"weighted_sq_dist {tag}", "weighted_sq_dist", (flat, flat, np.repeat(w, args.length).astype(dtype)),
               args.repeat, flops=2.0 * pairs * pairs * m * n, peak=peak_gflops(threads, dtype, args.fma_units)[0])
        series = series64.astype(dtype)
        report(f"baseline {tag}", "baseline", (series, 12, 0.05), args.repeat)
        report(f"cmnd {tag}", "cmnd", (periodicity64.astype(dtype), np.arange(2, 289)), args.repeat)


if __name__ == "__main__":
    main()
