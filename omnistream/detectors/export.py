"""Exported models: a TorchScript file with its score semantics inside (``omnistream.json``).

The file is self-contained: ``forward(x: (B, W, M) float32) -> (B, W, M)`` per-metric scores
from raw values, optionally ``score_last``; the metadata says how those scores reduce to a
point score, which way is anomalous, the label-free threshold and its calibration state, and
what the model reads. The worker decides from the metadata alone, so a folder may mix detectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from omnistream.detectors.base import Detector
from omnistream.detectors.reduce import REDUCERS

METADATA_NAME = "omnistream.json"
# Optional method of an exported model: ``forward(x)[:, -1:]`` computed with less work.
LAST_STEP = "score_last"


@dataclass
class ModelInfo:
    """What a scorer needs to know about an exported model."""

    name: str  # the detector's registry name
    version: str
    metrics: list[str]
    window: int
    threshold: float  # on the reduced point score; a point is anomalous when score >= threshold
    entity: str | None = None
    cluster: str | None = None
    strategy: str = "scratch"
    reduction: str = "mean_sq"  # per-metric scores -> point score (detectors.reduce)
    direction: str = "higher"  # a higher score is more anomalous (the contract of every detector)
    input_kind: str = "entity"  # entity window (B, W, M); "system" for topology models
    calibration: dict = field(default_factory=dict)  # threshold state, e.g. POT (detectors.calibration)
    config: dict = field(default_factory=dict)  # the detector's hyper-parameters
    training: dict = field(default_factory=dict)
    # System models: the entities in column order (metrics are "<node>/<metric>", node-major) and,
    # per node, the centre and threshold of its own score, which rank a system incident's entities.
    nodes: list[str] = field(default_factory=list)
    node_calibration: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.reduction not in REDUCERS:
            raise ValueError(f"unknown score reduction {self.reduction!r}; known: {sorted(REDUCERS)}")
        if self.direction != "higher":
            raise ValueError(f"score direction must be 'higher', not {self.direction!r}")
        if self.input_kind not in ("entity", "system"):
            raise ValueError(f"input_kind must be 'entity' or 'system', not {self.input_kind!r}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, not {self.window}")
        if self.input_kind == "system" and self.nodes and len(self.metrics) % len(self.nodes):
            raise ValueError(f"{len(self.metrics)} metric columns are not {len(self.nodes)} nodes' metrics")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelInfo:
        data = json.loads(text)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"model metadata has unknown fields {sorted(unknown)}")
        return cls(**data)


def export(detector: Detector, info: ModelInfo, path: Path, parity_windows: np.ndarray,
           atol: float = 1e-4) -> str:
    """Script the detector's scoring module to ``path`` (atomically), check that the file
    computes what the detector does, for ``forward`` and ``score_last``; return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with quiet_torchscript():
        module = torch.jit.script(detector.scoring_module().eval())
        torch.jit.save(module, str(tmp), _extra_files={METADATA_NAME: info.to_json()})
    loaded, _ = load(tmp)
    x = torch.from_numpy(np.require(parity_windows, np.float32, ["C", "W"]))
    want = detector.score(parity_windows)
    with torch.no_grad():
        checks = [(loaded(x).numpy(), want)]
        if hasattr(loaded, LAST_STEP):
            checks.append((getattr(loaded, LAST_STEP)(x).numpy(), want[:, -1:]))
    for got, expected in checks:
        if got.shape != expected.shape:
            tmp.unlink()
            raise RuntimeError(f"TorchScript parity check failed: shape {got.shape}, expected {expected.shape}")
        if not np.allclose(got, expected, atol=atol, rtol=1e-4):
            tmp.unlink()
            raise RuntimeError(f"TorchScript parity check failed: max |diff| = {np.abs(got - expected).max():.3g}")
    tmp.replace(path)
    return sha256_file(path)


def load(source: Path | bytes, device: str = "cpu") -> tuple[torch.jit.ScriptModule, ModelInfo]:
    """Load an exported model and its metadata, from its file or from its bytes (which a caller
    that checked their sha256 passes, so that what loads is what was checked)."""
    extra = {METADATA_NAME: ""}
    with quiet_torchscript():
        module = torch.jit.load(io.BytesIO(source) if isinstance(source, bytes) else str(source),
                                map_location=device, _extra_files=extra)
    if not extra[METADATA_NAME]:
        what = "these bytes are" if isinstance(source, bytes) else f"{source} is"
        raise ValueError(f"{what} not an omnistream model (no {METADATA_NAME} inside)")
    return module.eval(), ModelInfo.from_json(extra[METADATA_NAME])


def optimise_for_inference(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Freeze the weights in and fold batch norm into the convolutions (same outputs, ~2x faster)."""
    methods = [LAST_STEP] if hasattr(module, LAST_STEP) else []
    with quiet_torchscript():
        frozen = torch.jit.freeze(module.eval(), preserved_attrs=methods)
        return torch.jit.optimize_for_inference(frozen, other_methods=methods)


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
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
