"""From window scores to incidents: threshold, open / ongoing / resolved, deterministic ids.

The threshold is the model's label-free POT threshold; with ``decide.adapt_threshold`` it
follows the entity's scores by SPOT/DSPOT (detectors.calibration). The incident and the
threshold state live in the entity's persisted window state (a plain dict), so a restarted
worker continues the same incident with the same threshold, and a replay of the same input
produces the same events with the same ``event_id``.
"""

from __future__ import annotations

import numpy as np

from omnistream.detectors.calibration import Pot
from omnistream.detectors.export import ModelInfo
from omnistream.detectors.reduce import node_scores
from omnistream.detectors.shift import ShiftWatch
from omnistream.stream.config import DecideSettings, ShiftSettings
from omnistream.stream.records import (AnomalyEvent, MetricContribution, ModelRef, RelatedEntity, ScoreRecord,
                                       stable_id)
from omnistream.stream.scorer import WindowScores
from omnistream.topology.rootcause import rank_entities


def top_contributions(per_metric: np.ndarray, names: list[str], k: int) -> list[MetricContribution]:
    """Share of each metric in the point's squared score, largest first."""
    energy = np.nan_to_num(per_metric.astype(np.float64) ** 2)
    total = energy.sum()
    if total <= 0:
        return []
    order = np.argsort(-energy, kind="stable")[:k]
    return [MetricContribution(metric=names[j], contribution=round(float(energy[j] / total), 4)) for j in order]


def related_entities(per_metric: np.ndarray, info: ModelInfo, top_metrics: int, limit: int) -> list[RelatedEntity]:
    """A system model's point, entity by entity: each node's score (its metrics reduced as the
    model reduces a point) calibrated against the node's own centre and threshold from the model
    file; the ``limit`` most anomalous, first to last, each with its own top metrics. All nodes
    at once in NumPy: only the entities listed become objects."""
    nodes = info.nodes
    if not nodes:
        return []
    raw = node_scores(per_metric, len(nodes), info.reduction)
    if len(info.node_calibration) == len(nodes):
        centre = np.array([c["center"] for c in info.node_calibration])
        threshold = np.array([c["threshold"] for c in info.node_calibration])
        raw = (raw - centre) / np.maximum(threshold - centre, 1e-12)
    width = len(info.metrics) // len(nodes)
    names = [m.split("/", 1)[-1] for m in info.metrics[:width]]
    energy = np.nan_to_num(per_metric.astype(np.float64).reshape(len(nodes), width) ** 2)
    share = energy / np.maximum(energy.sum(axis=1, keepdims=True), 1e-300)
    top = np.argsort(-energy, axis=1, kind="stable")[:, :top_metrics]
    index = {name: i for i, name in enumerate(nodes)}
    out = []
    for name, score in rank_entities(raw, nodes)[:limit]:
        i = index[name]
        contributions = [MetricContribution(metric=names[j], contribution=round(float(share[i, j]), 4))
                         for j in top[i]] if energy[i].any() else []
        out.append(RelatedEntity(entity=name, calibrated_score=round(score, 4) if np.isfinite(score) else 0.0,
                                 top_metrics=contributions))
    return out


class Decider:
    """Turns each scored chunk of an entity into zero or one anomaly event."""

    def __init__(self, settings: DecideSettings, shift: ShiftSettings | None = None):
        self.settings = settings
        shift = shift or ShiftSettings(persist_seconds=0)
        self.shift = ShiftWatch(shift.persist_seconds, shift.share)
        # entity -> (its state, model version, live Pot): within a batch each point carries on the
        # Pot of the point before; the state's dict is written once, at the end of the batch.
        self._pots: dict[str, tuple[dict, str, Pot]] = {}

    def end_batch(self) -> None:
        """Write each adapted threshold into its entity's state (before the state is saved), and
        forget the Pots: states restored or dropped before the next batch are read afresh."""
        for state, version, pot in self._pots.values():
            state["threshold"] = {"model": version, **pot.to_dict()}
        self._pots.clear()

    def decide(self, entity: str, state: dict, scores: WindowScores, point_ts: np.ndarray,
               window_span: tuple[float, float], info: ModelInfo) -> tuple[AnomalyEvent | None, ScoreRecord]:
        i = int(np.argmax(scores.point))
        score, ts = float(scores.point[i]), float(point_ts[i])
        version = f"{info.name}:{info.version}"
        pot = self._pot(entity, state, info, version)
        if pot is None:  # a model exported without calibration state: its fixed threshold
            threshold = float(info.threshold)
            calibrated = score / threshold if threshold > 0 else float("inf")
            anomalous = score >= threshold
        else:
            threshold = pot.threshold
            calibrated = float(pot.calibrated(score, threshold))
            anomalous = pot.update(score, threshold) if self.settings.adapt_threshold else score >= threshold
            if self.settings.adapt_threshold:
                self._pots[entity] = (state, version, pot)
        # Built without validation: every field is a number or name computed here, once per point.
        record = ScoreRecord.model_construct(entity=entity, ts=float(point_ts[-1]), score=score,
                                             threshold=threshold, calibrated_score=calibrated, top_metrics=[])
        if anomalous:  # what a system incident over per-entity models names for this entity
            record.top_metrics = top_contributions(scores.per_metric[i], info.metrics, self.settings.top_metrics)
        if self.shift.observe(state.setdefault("shift", {}), ts, anomalous):
            # The new normal: the incident ends, the threshold starts again from the model file's.
            incident = state.get("incident") or {"opened": ts}
            new_state, state["incident"] = "shift", None
            state.pop("pending", None)
            state.pop("threshold", None)
            self._pots.pop(entity, None)
        else:
            new_state, incident = self.advance(state, anomalous, ts)
        if new_state is None:
            return None, record
        event_ts = ts if new_state != "resolved" else float(point_ts[-1])
        event = AnomalyEvent(
            event_id=stable_id(entity, incident["opened"], new_state, event_ts, info.name, info.version),
            entity=entity, state=new_state, ts=event_ts, window=window_span, score=score, threshold=threshold,
            calibrated_score=calibrated,
            model=ModelRef(name=info.name, version=info.version, cluster=info.cluster, strategy=info.strategy),
            top_metrics=record.top_metrics or top_contributions(scores.per_metric[i], info.metrics,
                                                                self.settings.top_metrics),
        )
        if info.input_kind == "system":
            event.system = entity
            event.related_entities = related_entities(scores.per_metric[i], info, self.settings.top_metrics,
                                                      self.settings.related_entities)
        return event, record

    def advance(self, state: dict, anomalous: bool, ts: float) -> tuple[str | None, dict]:
        """One point on the incident in ``state``: the state change it makes (open, ongoing,
        resolved, or None) and the incident it belongs to."""
        incident = state.get("incident")
        if incident is None:  # ``open_after`` anomalous points in a row open one, dated from the first
            if not anomalous:
                state.pop("pending", None)
                return None, {}
            pending = state.setdefault("pending", {"since": ts, "anomalous": 0})
            pending["anomalous"] += 1
            if pending["anomalous"] < self.settings.open_after:
                return None, {}
            state["incident"] = {"opened": pending["since"], "anomalous": pending["anomalous"], "normal_run": 0}
            del state["pending"]
            return "open", state["incident"]
        if anomalous:
            incident["anomalous"] += 1
            incident["normal_run"] = 0
            return ("ongoing" if incident["anomalous"] % self.settings.ongoing_every == 0 else None), incident
        incident["normal_run"] += 1
        if incident["normal_run"] >= self.settings.resolve_after:
            state["incident"] = None
            return "resolved", incident
        return None, incident

    def _pot(self, entity: str, state: dict, info: ModelInfo, version: str) -> Pot | None:
        """The entity's threshold state for this model (``version``: its ``name:version``):
        carried on (within the batch, or from its state), or fresh from the model file."""
        live = self._pots.get(entity)
        if live is not None and live[0] is state and live[1] == version:
            return live[2]
        held = state.get("threshold")
        if held and held.get("model") == version:
            return Pot.from_dict(held)
        return Pot.from_dict(info.calibration) if info.calibration else None
