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
