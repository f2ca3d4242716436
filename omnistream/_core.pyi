"""omnistream numeric kernels in C++ (csrc/; GIL released; float32 stays float32, else float64)."""

import numpy as np
from numpy.typing import NDArray

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
