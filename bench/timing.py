"""What the benchmarks share: the best time of a few calls after untimed warm-up ones, and a
process's resident memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def best_of(fn: Callable[[], object], repeat: int, warm_up: int = 1) -> float:
    """Best time of ``repeat`` calls of ``fn`` after ``warm_up`` untimed ones (numba compiles,
    caches fill, TorchScript's profiling executor optimises a module over its first calls)."""
    for _ in range(warm_up):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def resident_mb(pid: int | str = "self") -> float:
    """Resident memory (VmRSS) of process ``pid`` (this one by default), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")
