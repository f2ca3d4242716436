"""Fit a system detector (input kind ``system``) on a labelled or recorded system, calibrate
its label-free thresholds, export it as ``<system>.pt``.

As ``offline.fit`` for entities: the older 80 % of the system's train split trains, the newest
20 % is scored as the worker would and sets the POT threshold of the system score; each node's
score (its metrics' reduction) gets a POT of its own on the same held-out scores, so that the
nodes' scores compare and a system incident can rank its entities (the root-cause candidates).
The node order and the call graph (as the adjacency of the config) travel in the model file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from omnistream.detectors.base import point_scores
from omnistream.detectors.calibration import Pot, fit_pot
from omnistream.detectors.reduce import node_scores
from omnistream.offline.fit import Calibration, Fitted, export_fitted, fit_entity, model_info, split_history
from omnistream.offline.systems import SystemSeries
from omnistream.topology.graph import adjacency


@dataclass
class SystemFit:
    fitted: Fitted
    node_pots: list[Pot]  # per node, in the system's node order


def fit_system(detector_name: str, system: SystemSeries, config: dict | None = None,
               calibration: Calibration | None = None) -> SystemFit:
    """Train ``detector_name`` on the system's flattened train split, with its call graph."""
    calibration = calibration or Calibration()
    flat, nodes = system.flat(), len(system.nodes)
    calls = adjacency(system.topology, system.nodes)
    fitted = fit_entity(detector_name, flat.train, {**(config or {}), "nodes": nodes, "adjacency": calls.tolist()},
                        calibration)
    d = fitted.detector
    train, held_out = split_history(flat.train, d.window, calibration)
    held = node_scores(point_scores(d, held_out, history=train), nodes, d.reduction)
    pots = [fit_pot(held[:, i], calibration.risk, calibration.level) for i in range(nodes)]
    return SystemFit(fitted, pots)


def export_system(fit: SystemFit, system: SystemSeries, out_dir: Path) -> tuple[Path, str]:
    """``out_dir/<system>.pt`` for the worker; returns (path, sha256)."""
    flat = system.flat()
    info = model_info(fit.fitted, flat.metrics, entity=system.system,
                      topology_version=system.topology.version)
    info.nodes = list(system.nodes)
    info.node_calibration = [{"center": p.center, "threshold": p.threshold} for p in fit.node_pots]
    path = Path(out_dir) / f"{system.system}.pt"
    sha = export_fitted(fit.fitted, path, info, flat.test if len(flat.test) else flat.train)
    return path, sha
