"""The build is portable: each copy of the C++ kernels holds no instruction beyond its target
(so the baseline runs on any x86-64 CPU), and the dispatcher picks what the CPU runs."""

from __future__ import annotations

import importlib
import importlib.util
import platform
import re
import shutil
import subprocess

import pytest

from omnistream.kernels import targets

X86 = platform.machine() in ("x86_64", "AMD64")
# What no instruction of a target may be: VEX-encoded ones (v...) need AVX, 256-bit ymm too,
# 512-bit zmm, the mask registers k1-k7 and xmm16-31 need AVX-512; the baseline (SSE2) has no
# SSSE3 or SSE4 instruction either.
VEX_OR_WIDER = r"\tv[a-z]|%[yz]mm|%k[1-7]"
FORBIDDEN = {
    "sse2": VEX_OR_WIDER + r"|\t(pshufb|palignr|phadd|phsub|pabs|pmulhrsw|blendv|blendp|round[ps][sd]|ptest|pmulld"
                           r"|pinsr[bdq]|pextr[bdq]|popcnt|dpp[sd]|pmins[bd]|pmaxs[bd]|pminu[dw]|pmaxu[dw]"
                           r"|pcmpeqq|pcmpgtq|crc32)\b",
    "sse4": VEX_OR_WIDER,
    "avx2": r"%zmm|%k[1-7]|%[xy]mm(1[6-9]|2\d|3[01])",
}


def _module_file(target: str) -> str:
    """The module's file, found without importing it: its init code is compiled for its
    target, and a CPU without that target would die of an illegal instruction."""
    return importlib.util.find_spec(targets.module_name(target)).origin


@pytest.mark.skipif(not X86 or shutil.which("objdump") is None, reason="x86-64 with binutils' objdump only")
@pytest.mark.parametrize("target", sorted(FORBIDDEN))
def test_a_target_s_module_holds_no_wider_instruction(target):
    code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", _module_file(target)], capture_output=True,
                          text=True, check=True).stdout
    wider = [line for line in code.splitlines() if re.search(FORBIDDEN[target], line)]
    assert not wider, f"{len(wider)} instructions beyond {target}, e.g. {wider[:3]}"


@pytest.mark.skipif(not X86, reason="x86-64 only")
def test_the_avx512_module_uses_its_width():
    """The control: the check above would see AVX-512 code where there is some."""
    if shutil.which("objdump") is None:
        pytest.skip("binutils' objdump is missing")
    code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", _module_file("avx512")], capture_output=True,
                          text=True, check=True).stdout
    assert re.search(FORBIDDEN["avx2"], code)


def test_the_runnable_targets_end_with_the_baseline():
    core = importlib.import_module("omnistream._core")
    runs = targets.runnable()
    assert runs[-1] == core.TARGET and len(set(runs)) == len(runs)
    order = ["avx512", "avx2", "sse4", "sse2"]
    assert [t for t in order if t in runs] == runs if X86 else runs == [core.TARGET]
