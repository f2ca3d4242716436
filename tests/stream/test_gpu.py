"""The GPU path: the same points scored with the models on CUDA and on the CPU give the same
scores and events. Runs where CUDA is present (never in CI, which has no GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from omnistream.offline.datasets import load_asd, metric_names
from omnistream.stream.config import Settings
from omnistream.stream.points import Point
from omnistream.stream.processor import Processor
from omnistream.stream.scorer import ModelStore, pick_device

DEMO_MODELS = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "models"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _points() -> list[Point]:
    out = []
    for series in load_asd(["omi-2", "omi-3"]):
        names = metric_names(series.test.shape[1])
        out += [Point(series.entity, 1_700_000_000.0 + 300 * i, dict(zip(names, series.test[i].tolist())), "", 0)
                for i in range(600)]
    return sorted(out, key=lambda p: p.ts)


def _run(device: str) -> tuple[dict, set]:
    store = ModelStore(DEMO_MODELS, device)
    store.refresh()
    assert {m.device for m in store.models.values()} == {device}
    settings = Settings(decide={"publish_scores": True})
    outcome = Processor(settings, store).process(_points())
    return {(r.entity, r.ts): r.score for r in outcome.scores}, {e.event_id for e in outcome.anomalies}


def test_cuda_scores_and_events_equal_the_cpu_ones():
    assert pick_device("auto") == "cuda"
    gpu_scores, gpu_events = _run("cuda")
    cpu_scores, cpu_events = _run("cpu")
    assert gpu_scores.keys() == cpu_scores.keys() and len(gpu_scores) > 1000
    keys = sorted(cpu_scores)
    np.testing.assert_allclose([gpu_scores[k] for k in keys], [cpu_scores[k] for k in keys], rtol=1e-3, atol=1e-5)
    assert gpu_events == cpu_events
