"""Which compiled copy of the C++ kernels runs. One build holds a copy per instruction-set
target (the portable baseline ``omnistream._core``, and on x86-64 ``_core_sse4``, ``_core_avx2``
and ``_core_avx512``, each with its own vector width and register blocking); the best one the
CPU runs is imported, as the baseline's ``cpu_targets`` reports them (csrc/targets.hpp).
``OMNISTREAM_KERNEL_TARGET`` caps the choice (benchmarks compare the targets on one machine
with it): a target this CPU cannot run is an error, not a silent downgrade."""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)

CAP_VARIABLE = "OMNISTREAM_KERNEL_TARGET"


def module_name(target: str) -> str:
    """The module of ``target``: the baseline's is ``omnistream._core`` itself."""
    from omnistream import _core

    return "omnistream._core" if target == _core.TARGET else f"omnistream._core_{target}"


def runnable() -> list[str]:
    """The targets this CPU runs, best first; the last is the baseline."""
    from omnistream import _core

    if not hasattr(_core, "cpu_targets"):  # a stale build of the extension, from before the targets
        raise ImportError(f"{_core.__file__} predates the per-target build: rebuild it (make env)")
    return list(_core.cpu_targets())


def load() -> tuple[ModuleType, str]:
    """The kernels module of the best target (under the cap), and why it was chosen. A target
    whose module is missing from the build is passed over with a warning."""
    runs = runnable()
    cap = os.environ.get(CAP_VARIABLE, "").strip().lower()
    why = "the best target this CPU runs"
    if cap:
        if cap not in runs:
            raise ValueError(f"{CAP_VARIABLE}={cap}: this CPU runs {', '.join(runs)}")
        runs, why = runs[runs.index(cap):], f"capped by {CAP_VARIABLE}={cap}"
    missing = []
    for target in runs:
        try:
            module = importlib.import_module(module_name(target))
        except ImportError as exc:
            missing.append(f"{target} ({exc})")
            log.warning("kernel target %s is not in this build (%s): trying the next", target, exc)
            continue
        passed_over = f"; passed over: {', '.join(missing)}" if missing else ""
        return module, f"target {module.TARGET}, {8 * module.VECTOR_BYTES}-bit vectors: {why}{passed_over}"
    raise ImportError(f"no kernel target module loads: {', '.join(missing)}")
