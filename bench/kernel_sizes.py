"""Kernels at the transfer pipeline's sizes: all-pairs weighted distances (eq. 4, swept in
bounded blocks, each reduced to its nearest segment as assign_nearest does), the pivot (eq. 3)
and NCC alignment (best shift of eq. 7, then the roll) of 1k, 10k and 100k float32 segments,
each size and kernel in its own process, with time and peak memory.

Peak memory is the growth of the process's high-water mark (ru_maxrss) over the kernel, the
input already held (alignment's includes its output, the rolled copy of the input); the whole
matrix the blocks avoid (n x n distances, n x length NCC values) is given for contrast.
Reference in the same run: NCC alignment by the same facade call with the NumPy twin forced
(OMNISTREAM_KERNELS=numpy: BLAS GEMM, in the facade's blocks) and one streaming pass over the
input (as many threads as the kernels); the distances run on
NumPy's BLAS for every backend. GFLOP/s count the GEMM formulation's flops (C++ computes NCC by
FFT, with several times fewer, so for it they are an equivalent rate).

    python bench/kernel_sizes.py [--sizes 1000,10000,100000] [--metrics 38] [--length 60]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(kernel: str, count: int, metrics: int, length: int) -> dict:
    """Runs one kernel on ``count`` random float32 segments in this process: peak memory from
    the first call, time the best of 3 calls (1 where a call does over a teraflop)."""
    import numpy as np

    from omnistream import kernels
    from omnistream.kernels.reference import streaming_pass

    rng = np.random.default_rng(0)
    segments = rng.standard_normal((count, metrics, length), dtype=np.float32)
    w = rng.uniform(0.1, 2.0, metrics).astype(np.float32)

    run, flops = {  # "align" runs on the backend the process loaded: main forces NumPy for the reference
        "all_pairs": (lambda: kernels.assign_nearest(segments, segments, w), 2.0 * count * count * metrics * length),
        "pivot": (lambda: kernels.pivot(segments, w), 3.0 * count * metrics * length),
        "align": (lambda: kernels.align(segments, kernels.best_shift(segments[0], segments, w)[0]),
                  2.0 * count * metrics * length * length),
    }[kernel]
    before = peak_mb()
    started = time.perf_counter()
    run()
    times = [time.perf_counter() - started]
    growth = peak_mb() - before
    for _ in range(2 if flops < 1e12 else 0):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    passes = []
    for _ in range(3):
        t0 = time.perf_counter()
        streaming_pass(segments, int(os.environ.get("OMNISTREAM_THREADS", os.cpu_count() or 1)))
        passes.append(time.perf_counter() - t0)
    return {"kernel": kernel, "count": count, "seconds": min(times), "gflops": flops / min(times) / 1e9,
            "pass_seconds": min(passes), "input_mb": segments.nbytes / 2**20,
            "peak_growth_mb": growth, "backend": kernels.BACKEND_NAME}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated segment counts")
    parser.add_argument("--metrics", type=int, default=38)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--one", nargs=2, metavar=("KERNEL", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.metrics, args.length)))
        return
    print(f"float32 segments of {args.metrics} x {args.length}; threads: {os.environ.get('OMNISTREAM_THREADS', 'all')}")
    print(f"{'segments':>9} {'kernel':<32} {'time':>9} {'GFLOP/s':>8} {'vs numpy':>9} {'vs 1 pass':>9} "
          f"{'input MB':>9} {'peak +MB':>9} {'whole matrix MB':>15}")
    for count in (int(c) for c in args.sizes.split(",")):
        rows = {}
        for kernel, forced in (("all_pairs", ""), ("pivot", ""), ("align", ""), ("numpy_align", "numpy")):
            env = {**os.environ, "OMNISTREAM_KERNELS": forced} if forced else None
            out = subprocess.run([sys.executable, __file__, "--one", kernel.removeprefix("numpy_"), str(count),
                                  "--metrics", str(args.metrics), "--length", str(args.length)],
                                 check=True, capture_output=True, text=True, env=env)
            rows[kernel] = json.loads(out.stdout.strip().splitlines()[-1])
        for kernel, label in (("all_pairs", "all-pairs distances"), ("pivot", "pivot, eq. 3"),
                              ("align", "NCC alignment"), ("numpy_align", "NCC alignment")):
            r = rows[kernel]
            backend = {"all_pairs": "BLAS", "pivot": "NumPy"}.get(kernel, r["backend"])
            whole = {"all_pairs": count * count, "align": count * args.length,
                     "numpy_align": count * args.length}.get(kernel, 0) * 4 / 2**20
            versus = f"{rows['numpy_align']['seconds'] / r['seconds']:.2f}x" if kernel == "align" else "-"
            print(f"{count:>9} {label + ' (' + backend + ')':<32} {r['seconds']:>8.3f}s {r['gflops']:>8.1f} "
                  f"{versus:>9} {r['seconds'] / r['pass_seconds']:>8.1f}x {r['input_mb']:>9.0f} "
                  f"{r['peak_growth_mb']:>9.0f} {whole:>15.0f}")


if __name__ == "__main__":
    main()
