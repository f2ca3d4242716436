"""The one small interface every detector implements, and its TorchScript export.

A detector learns from windows (count, T, M) of one entity or cluster, scores windows with
per-point, per-metric anomaly scores, and exports a self-contained TorchScript file whose
``forward(x: (B, T, M) float32) -> (B, T, M)`` returns the same scores from raw values
(normalisation is baked in), and optionally ``score_last(x) -> (B, 1, M)``, the last step's
scores alone, cheaper for a stream that scores each point as the end of its window. Metadata
travels inside the file (``omnistream.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

METADATA_NAME = "omnistream.json"
# Optional method of an exported model: ``forward(x)[:, -1:]`` computed with less work.
LAST_STEP = "score_last"


@dataclass
class ModelInfo:
    """What a scorer needs to know about an exported model."""

    name: str
    version: str
    metrics: list[str]
    window: int
    threshold: float
    entity: str | None = None
    cluster: str | None = None
    strategy: str = "scratch"
    training: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelInfo":
        return cls(**json.loads(text))


class Detector(Protocol):
    name: str
    window: int

    def fit(self, windows: np.ndarray) -> "Detector": ...

    def score(self, windows: np.ndarray) -> np.ndarray: ...

    def scoring_module(self) -> torch.nn.Module: ...

    def transferable_layers(self) -> dict[str, list[str]]: ...


def sliding_windows(series: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Windows (count, window, M) of a series (T, M) as a read-only strided view."""
    if series.shape[0] < window:
        raise ValueError(f"series of {series.shape[0]} points is shorter than the window {window}")
    view = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)[::stride]
    return view.transpose(0, 2, 1)


def point_scores(detector: Detector, series: np.ndarray, history: np.ndarray | None = None,
                 batch: int = 1024) -> np.ndarray:
    """Per-point (T, M) scores of a series, each point scored as the last of its window.

    ``history`` (the points just before the series) fills the first window; without it the
    first window-1 points get the score of the first full window.
    """
    context = series if history is None else np.concatenate([history[-(detector.window - 1):], series])
    windows = sliding_windows(context, detector.window)
    last = np.concatenate([detector.score(windows[i:i + batch])[:, -1] for i in range(0, len(windows), batch)])
    missing = series.shape[0] - last.shape[0]
    return np.concatenate([np.repeat(last[:1], missing, axis=0), last]) if missing > 0 else last


def export(detector: Detector, info: ModelInfo, path: Path, parity_windows: np.ndarray,
           atol: float = 1e-4) -> str:
    """Script the detector's scoring module to ``path``, check parity, return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with _quiet_torchscript():
        module = torch.jit.script(detector.scoring_module().eval())
        torch.jit.save(module, str(tmp), _extra_files={METADATA_NAME: info.to_json()})
    loaded, _ = load(tmp)
    x = torch.from_numpy(np.ascontiguousarray(parity_windows, dtype=np.float32))
    want = detector.score(parity_windows)
    with torch.no_grad():
        checks = [(loaded(x).numpy(), want)]
        if hasattr(loaded, LAST_STEP):
            checks.append((getattr(loaded, LAST_STEP)(x).numpy(), want[:, -1:]))
    for got, expected in checks:
        if not np.allclose(got, expected, atol=atol, rtol=1e-4):
            tmp.unlink()
            raise RuntimeError(f"TorchScript parity check failed: max |diff| = {np.abs(got - expected).max():.3g}")
    tmp.replace(path)
    return sha256_file(path)


def load(path: Path, device: str = "cpu") -> tuple[torch.jit.ScriptModule, ModelInfo]:
    """Load an exported model and its metadata."""
    extra = {METADATA_NAME: ""}
    with _quiet_torchscript():
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    if not extra[METADATA_NAME]:
        raise ValueError(f"{path} is not an omnistream model (no {METADATA_NAME} inside)")
    return module.eval(), ModelInfo.from_json(extra[METADATA_NAME])


def optimise_for_inference(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Freeze the weights in and fold batch norm into the convolutions (same outputs, ~2x faster)."""
    methods = [LAST_STEP] if hasattr(module, LAST_STEP) else []
    with _quiet_torchscript():
        frozen = torch.jit.freeze(module.eval(), preserved_attrs=methods)
        return torch.jit.optimize_for_inference(frozen, other_methods=methods)


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """TorchScript is the deployment format here; its deprecation notices are not for users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=FutureWarning)
        yield


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
