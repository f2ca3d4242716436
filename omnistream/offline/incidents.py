"""Figures an operator reads: the incidents a deployed threshold opens, not its points.

From one entity's deployed decisions and labels, with the worker's incident rule (an incident
opens on a flagged point while none is open and closes after ``resolve_after`` normal points in
a row, as stream.decide does):
- incidents opened, and per entity-day where the points' step is known;
- incident precision: the share of opened incidents whose span overlaps a labelled segment;
- segment recall within ``k``: the share of labelled segments in which an incident opens at most
  ``k`` points after the segment's first point (an incident already open when the segment starts
  sends no new alert, so it does not count);
- detection delay: points from a segment's first point to that opening, median over the
  segments found.
Counts pool over entities by summing, as F1's do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from omnistream.offline.metrics import anomaly_segments

RESOLVE_AFTER = 3  # normal points that close an incident (the worker's decide.resolve_after)
WITHIN = 5  # points after a segment's start within which an opening counts as finding it


def incident_spans(flags: np.ndarray, resolve_after: int = RESOLVE_AFTER) -> list[tuple[int, int]]:
    """[open, close) of each incident: it opens on a flagged point while none is open and
    closes after ``resolve_after`` normal points in a row (or at the end)."""
    spans, opened, normal = [], None, 0
    for i, flagged in enumerate(np.asarray(flags, dtype=bool).tolist()):
        if flagged:
            if opened is None:
                opened = i
            normal = 0
        elif opened is not None:
            normal += 1
            if normal >= resolve_after:
                spans.append((opened, i + 1))
                opened = None
    if opened is not None:
        spans.append((opened, len(flags)))
    return spans


@dataclass
class IncidentCounts:
    incidents: int = 0
    true_incidents: int = 0  # overlapping a labelled segment
    segments: int = 0
    found: int = 0  # segments with an opening within k points of their start
    delays: list[int] = field(default_factory=list)  # of the segments found
    points: int = 0
    days: float | None = 0.0  # None where a step is unknown

    def __add__(self, other: IncidentCounts) -> IncidentCounts:
        days = None if self.days is None or other.days is None else self.days + other.days
        return IncidentCounts(self.incidents + other.incidents, self.true_incidents + other.true_incidents,
                              self.segments + other.segments, self.found + other.found, self.delays + other.delays,
                              self.points + other.points, days)

    def as_dict(self) -> dict:
        return {"incidents": self.incidents,
                "per_entity_day": self.incidents / self.days if self.days else None,
                "incident_precision": self.true_incidents / self.incidents if self.incidents else None,
                "segment_recall": self.found / self.segments if self.segments else None,
                "median_delay": float(np.median(self.delays)) if self.delays else None}


def incident_counts(flags: np.ndarray, labels: np.ndarray, step_seconds: float | None = None, k: int = WITHIN,
                    resolve_after: int = RESOLVE_AFTER) -> IncidentCounts:
    """One entity's incident figures from its deployed ``flags`` and ``labels``."""
    spans = incident_spans(flags, resolve_after)
    labels = np.asarray(labels, dtype=bool)
    opens = np.array([a for a, _ in spans], dtype=int)
    segments = anomaly_segments(labels)
    delays = []
    for start, end in segments:
        inside = opens[(opens >= start) & (opens < min(end, start + k + 1))]
        if len(inside):
            delays.append(int(inside[0] - start))
    return IncidentCounts(len(spans), sum(bool(labels[a:b].any()) for a, b in spans), len(segments), len(delays),
                          delays, len(labels), len(labels) * step_seconds / 86400 if step_seconds else None)
