"""omnistream numeric kernels in C++ (csrc/; GIL released; float32 stays float32, else float64).

The portable baseline copy; ``_core_sse4``, ``_core_avx2`` and ``_core_avx512`` (x86-64) have the
same interface, compiled for their instruction sets (omnistream.kernels.targets picks one)."""

import numpy as np
from numpy.typing import NDArray

TARGET: str  # the instruction-set target this copy is compiled for
VECTOR_BYTES: int  # its vector width

def cpu_targets() -> list[str]:
    """The kernel targets this CPU runs, best first; the last is the baseline."""

def baseline(x: NDArray[np.floating], window: int, drop: float = 0.05) -> NDArray[np.floating]:
    """Robust baseline of each row of x (rows, length): drop extremes, interpolate, moving average."""

def cmnd(x: NDArray[np.floating], periods: NDArray[np.integer]) -> NDArray[np.float64]:
    """CMND of each row of x at each period -> (rows, periods) float64."""

def weighted_ncc(ref: NDArray[np.floating], segments: NDArray[np.floating],
                 w: NDArray[np.floating]) -> NDArray[np.floating]:
    """Weighted NCC at every circular shift (count, n)."""

def best_shift(ref: NDArray[np.floating], segments: NDArray[np.floating],
               w: NDArray[np.floating]) -> tuple[NDArray[np.int64], NDArray[np.floating]]:
    """(shift, ncc) of the best circular shift per segment."""

def align(segments: NDArray[np.floating], shift: NDArray[np.integer]) -> NDArray[np.floating]:
    """Roll each segment right by its shift along the last axis."""
