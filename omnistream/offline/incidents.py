"""Figures an operator reads: the incidents a deployed threshold opens, not its points.

From one entity's deployed decisions and labels, with the worker's incident rule (stream.decide:
``open_after`` flagged points in a row send the alert, and the incident dates from the first of
them; ``resolve_after`` normal points in a row close it):
- incidents opened, and per entity-day where the points' step is known;
- incident precision: the share of opened incidents whose span (first flagged point to close)
  overlaps a labelled segment;
- segment recall within ``k``: the share of labelled segments whose alert is sent at most ``k``
  points after the segment's first point (an incident already open when the segment starts
  sends no new alert, so it does not count);
- detection delay: points from a segment's first point to that alert, median over the segments
  found.
Counts pool over entities by summing, as F1's do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from omnistream.offline.metrics import anomaly_segments
from omnistream.stream.config import OPEN_AFTER, DecideSettings

RESOLVE_AFTER = DecideSettings().resolve_after  # the worker's default
WITHIN = 5  # points after a segment's start within which an alert counts as finding it


class Incident(NamedTuple):
    start: int  # its first flagged point
    alert: int  # the point at which the worker sends its open event
    end: int  # one past the point that closes it (or the series' length)


def incident_spans(flags: np.ndarray, open_after: int = OPEN_AFTER,
                   resolve_after: int = RESOLVE_AFTER) -> list[Incident]:
    """The incidents of ``flags``, by the worker's rule: ``open_after`` flagged points in a row
    open one, ``resolve_after`` normal points in a row close it (or the end does)."""
    spans, start, alert, run, normal = [], 0, None, 0, 0
    for i, flagged in enumerate(np.asarray(flags, dtype=bool).tolist()):
        if flagged:
            run, normal = run + 1, 0
            if alert is None and run >= open_after:
                start, alert = i - run + 1, i
        else:
            run = 0
            if alert is not None:
                normal += 1
                if normal >= resolve_after:
                    spans.append(Incident(start, alert, i + 1))
                    alert = None
    if alert is not None:
        spans.append(Incident(start, alert, len(flags)))
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
                    open_after: int = OPEN_AFTER, resolve_after: int = RESOLVE_AFTER) -> IncidentCounts:
    """One entity's incident figures from its deployed ``flags`` and ``labels``."""
    spans = incident_spans(flags, open_after, resolve_after)
    labels = np.asarray(labels, dtype=bool)
    opens = np.array([s.alert for s in spans], dtype=int)
    segments = anomaly_segments(labels)
    delays = []
    for start, end in segments:
        inside = opens[(opens >= start) & (opens < min(end, start + k + 1))]
        if len(inside):
            delays.append(int(inside[0] - start))
    true_incidents = sum(bool(labels[s.start:s.end].any()) for s in spans)
    return IncidentCounts(len(spans), true_incidents, len(segments), len(delays), delays, len(labels),
                          len(labels) * step_seconds / 86400 if step_seconds else None)
