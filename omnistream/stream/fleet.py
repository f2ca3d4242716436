"""System incidents from a fleet of per-entity models, for a system that has a topology and no
system model: the fallback that gives every deployment a ranked answer to "which service?".

The score agent forwards each member entity's calibrated scores (with, for a flagged window, its
top metrics) keyed by system, like the points a system model reads. They are aligned on the
system's clock (topology.align, one column: the calibrated score). A row is anomalous when any
entity is above its own deployed threshold (calibrated score >= 1); the incident opens, goes on
and resolves by the entity rules (stream.decide), and its events rank the entities that have a
score in that row by it (topology.rootcause.rank_entities; the ``decide.related_entities``
first), each with its flagged window's top metrics. The state (aligner, top metrics of pending
rows, incident) is one plain dict in the system's changelogged snapshot, so a restart continues
it and a replay gives the same ids.
"""

from __future__ import annotations

import logging

import numpy as np

from omnistream.stream.config import SystemSettings
from omnistream.stream.decide import Decider
from omnistream.stream.records import (AnomalyEvent, MetricContribution, ModelRef, RelatedEntity, ScoreRecord,
                                       Topology, stable_id)
from omnistream.topology.align import SystemAligner
from omnistream.topology.rootcause import rank_entities

log = logging.getLogger(__name__)
FLEET_MODEL = "entity-models"  # an event's model name: the system's entities' own models
FleetScore = tuple[str, float, float, list[tuple[str, float]]]  # entity, ts, calibrated score, top metrics


def fleet_scores(records: list[ScoreRecord]) -> list[FleetScore]:
    """What the score agent forwards of its score records."""
    return [(r.entity, r.ts, r.calibrated_score, [(c.metric, c.contribution) for c in r.top_metrics])
            for r in records if np.isfinite(r.calibrated_score)]


class FleetIncidents:
    """Calibrated entity scores of one system in, the system's events and score records out."""

    def __init__(self, decider: Decider, systems: SystemSettings):
        self.decider, self.systems = decider, systems

    def process(self, system: str, topology: Topology, state: dict, scores: list[FleetScore],
                now: float) -> tuple[list[AnomalyEvent], list[ScoreRecord], int]:
        """Events, score records, and the number of scores dropped (off the grid or too late)."""
        fleet = state.setdefault("fleet", {})
        aligner = self._aligner(system, fleet, topology)
        dropped = aligner.dropped
        top = fleet.setdefault("top", {})
        for entity, ts, calibrated, metrics in scores:
            aligner.add(entity, ts, {"calibrated": calibrated}, now)
            if metrics:
                top.setdefault(str(round(ts / aligner.step)), {})[entity] = metrics
        events, records = [], []
        for row in aligner.release(now):
            calibrated = row.values[:, 0]
            held = np.isfinite(calibrated)
            if not held.any():
                continue
            named = top.pop(str(round(row.ts / aligner.step)), {})
            worst = float(np.max(calibrated[held]))
            records.append(ScoreRecord(entity=system, ts=row.ts, score=worst, threshold=1.0, calibrated_score=worst))
            change, incident = self.decider.advance(fleet, worst >= 1.0, row.ts)
            if change is None:
                continue
            ranked = rank_entities(calibrated[held], [n for n, h in zip(aligner.nodes, held) if h])
            ranked = ranked[:self.decider.settings.related_entities]
            related = [RelatedEntity(entity=name, calibrated_score=round(score, 4),
                                     top_metrics=[MetricContribution(metric=m, contribution=c)
                                                  for m, c in named.get(name, [])]) for name, score in ranked]
            events.append(AnomalyEvent(
                event_id=stable_id(system, incident["opened"], change, row.ts, FLEET_MODEL, fleet["version"]),
                entity=system, system=system, state=change, ts=row.ts, window=(row.ts, row.ts), score=worst,
                threshold=1.0, calibrated_score=worst, model=ModelRef(name=FLEET_MODEL, version=fleet["version"]),
                top_metrics=[MetricContribution(metric=f"{ranked[0][0]}/{c.metric}", contribution=c.contribution)
                             for c in related[0].top_metrics], related_entities=related))
        if aligner.next_row is not None:  # top metrics of rows already released (or skipped) go
            for key in [k for k in top if int(k) < aligner.next_row]:
                del top[key]
        fleet["aligner"] = aligner.to_dict()
        return events, records, aligner.dropped - dropped

    def _aligner(self, system: str, fleet: dict, topology: Topology) -> SystemAligner:
        held = fleet.get("aligner")
        if held and held["nodes"] == topology.nodes:
            fleet["version"] = topology.version
            return SystemAligner.from_dict(held)
        if held:
            log.info("system %s (per-entity models) follows topology version %s: %d entities; rows not yet "
                     "complete start again", system, topology.version, len(topology.nodes))
            fleet["top"] = {}
        fleet["version"] = topology.version
        s = self.systems
        return SystemAligner(list(topology.nodes), ["calibrated"], s.step_seconds,
                             s.tolerance_seconds or s.step_seconds / 2, s.wait_rows, s.fill_rows, s.stop_after)
