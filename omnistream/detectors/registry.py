"""Detectors by name: ``create("usad", window=10)`` from a name and a dict of hyper-parameters
(Merlion's factory). The CLI, config files and the evaluation all go through here; an unknown
name or key is an error that lists what exists."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from omnistream.detectors.base import Detector

# name -> "module:Class"; imported on first use so that listing names costs nothing.
DETECTORS: dict[str, str] = {
    "zscore": "omnistream.detectors.zscore:ZScore",
    "mad": "omnistream.detectors.zscore:RobustZScore",
    "zscore_centred": "omnistream.detectors.zscore:CentredZScore",
    "seasonal": "omnistream.detectors.seasonal:Seasonal",
    "pca": "omnistream.detectors.pca:PCA",
    "dcvae": "omnistream.detectors.dcvae:DCVAE",
    "usad": "omnistream.detectors.usad:USAD",
    "tranad": "omnistream.detectors.tranad:TranAD",
    "omnianomaly": "omnistream.detectors.omnianomaly:OmniAnomaly",
    "topomad": "omnistream.detectors.topomad:TopoMAD",
    "stdrift": "omnistream.detectors.stdrift:STDrift",
    "ensemble": "omnistream.detectors.ensemble:Ensemble",
}


class DetectorError(ValueError):
    """An unknown detector or a bad hyper-parameter, with what would be valid."""


def names() -> list[str]:
    return list(DETECTORS)


def detector_class(name: str) -> type[Detector]:
    if name not in DETECTORS:
        raise DetectorError(f"unknown detector {name!r}; registered: {', '.join(DETECTORS)}")
    module, cls = DETECTORS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, **config: Any) -> Detector:
    """A new, unfitted detector ``name`` with ``config`` over its defaults."""
    cls = detector_class(name)
    try:
        return cls(cls.config_class.model_validate(config))
    except ValidationError as exc:
        fields = cls.config_class.model_fields
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg']}" for e in exc.errors())
        raise DetectorError(f"{name}: {problems}. Its hyper-parameters: {', '.join(fields)}") from None


def describe(name: str) -> dict[str, tuple[Any, str]]:
    """Each hyper-parameter of ``name``: (default, description)."""
    fields = detector_class(name).config_class.model_fields
    return {key: (f.get_default(call_default_factory=True), f.description or "") for key, f in fields.items()}
