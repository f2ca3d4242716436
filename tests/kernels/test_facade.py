"""The kernels facade says which backend runs and why; a fallback is never silent."""

import os
import subprocess
import sys

import pytest

from omnistream import kernels


@pytest.mark.skipif(bool(os.environ.get("OMNISTREAM_KERNELS")), reason="a backend is forced")
def test_the_cpp_extension_runs_by_default():
    # A failed build of the extension fails here, instead of running the slower twins unnoticed.
    assert kernels.BACKEND_NAME == "cpp" and "loaded" in kernels.BACKEND_REASON


def test_a_fallback_says_why_in_a_warning():
    code = ("import logging, sys; logging.basicConfig(); sys.modules['omnistream._core'] = None; "
            "import omnistream.kernels as k; print(k.BACKEND_NAME, '|', k.BACKEND_REASON)")
    env = {k: v for k, v in os.environ.items() if k != "OMNISTREAM_KERNELS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.startswith("numba | the C++ extension omnistream._core did not load")
    assert "WARNING:omnistream.kernels:kernels run on numba, slower" in result.stderr


def test_bench_info_names_the_backend():
    result = subprocess.run([sys.executable, "-m", "omnistream.cli.main", "bench", "--info"], capture_output=True,
                            text=True, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 0 and f"kernels: {kernels.BACKEND_NAME}" in out and "BLAS" in out


def _kernels_in_a_child(**env: str) -> subprocess.CompletedProcess:
    code = "import omnistream.kernels as k; print(k.KERNEL_TARGET, '|', k.BACKEND_REASON)"
    clean = {k: v for k, v in os.environ.items() if k not in ("OMNISTREAM_KERNELS", "OMNISTREAM_KERNEL_TARGET")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                          timeout=120)


def test_the_best_target_the_cpu_runs_is_chosen_and_named():
    best = kernels.targets.runnable()[0]
    result = _kernels_in_a_child()
    assert result.stdout.startswith(f"{best} | the C++ extension loaded; target {best}, ")
    assert "the best target this CPU runs" in result.stdout


@pytest.mark.parametrize("target", kernels.targets.runnable())
def test_a_capped_target_runs_and_says_so(target):
    result = _kernels_in_a_child(OMNISTREAM_KERNEL_TARGET=target)
    assert result.stdout.startswith(f"{target} | ") and f"capped by OMNISTREAM_KERNEL_TARGET={target}" in result.stdout


def test_a_cap_this_cpu_cannot_run_is_an_error():
    foreign = "neon" if "sse2" in kernels.targets.runnable() else "avx512"
    result = _kernels_in_a_child(OMNISTREAM_KERNEL_TARGET=foreign)
    assert result.returncode != 0
    assert f"OMNISTREAM_KERNEL_TARGET={foreign}: this CPU runs {', '.join(kernels.targets.runnable())}" in result.stderr
