"""Resident memory per loaded model, by detector: what a worker process pays for each entity
whose model is its own (a fine-tuned or from-scratch model), as opposed to a cluster's base
model, which is loaded once however many entities it serves.

One model is fitted on ASD's omi-2 per detector (``demo``: the demo's DC-VAE file) and written
``--models`` times with a different entity in its metadata, so that every file is distinct
content and loads on its own; the worker's ``ModelStore`` loads the folder, and the growth of
the resident memory is divided by the number of models. Each detector is measured in a fresh
process (memory freed by one would be reused by the next). Sizes on disk beside it.

    python bench/model_memory.py [--detectors zscore,seasonal,demo] [--models 200]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from e2e import bench_model
from timing import resident_mb

from omnistream.detectors.export import METADATA_NAME, load
from omnistream.stream.scorer import ModelStore

def distinct_copies(model: Path, folder: Path, count: int) -> None:
    module, info = load(model)
    for i in range(count):
        info.entity = f"memory-{i}"
        torch.jit.save(module, str(folder / f"memory-{i}.pt"), _extra_files={METADATA_NAME: info.to_json()})


def measure(detector: str, count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="omnistream-bench-memory-"))
    try:
        models = work / "models"
        models.mkdir()
        distinct_copies(bench_model(detector, work), models, count)
        size_kb = (models / "memory-0.pt").stat().st_size / 1024
        gc.collect()
        before = resident_mb()
        store = ModelStore(models)
        store.refresh()
        gc.collect()
        per_model = (resident_mb() - before) * 1024 / len(store.models)
        print(f"{detector:10s} {size_kb:8.0f} {per_model:22.0f}   ({len(store.models)} models loaded)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default="zscore,seasonal,demo")
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child that measures one detector
    args = parser.parse_args()
    if args.one:
        measure(args.one, args.models)
        return
    print(f"{'detector':10s} {'file kB':>8s} {'resident kB per model':>22s}", flush=True)
    for detector in args.detectors.split(","):
        subprocess.run([sys.executable, "-W", "ignore", __file__, "--one", detector, "--models", str(args.models)],
                       check=True)


if __name__ == "__main__":
    main()
