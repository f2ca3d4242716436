"""Anomaly events as alerts: one alert per incident (entity, or system, and the time it
opened), firing while the incident is open and resolved when it ends.

Alertmanager resolves an alert that is not sent again within its ``endsAt``, so a firing
alert carries ``endsAt`` a few re-send periods ahead and is sent again every period while its
incident is open; ``resolved`` and ``shift`` events (a level that moved for good ends the
incident) send it with ``endsAt`` at the event. Alerts are identified by their labels, so
sending one again is idempotent: a restart that re-sends is not a duplicate notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from omnistream.stream.records import AnomalyEvent

ALERT_NAME = "OmnistreamAnomaly"
ENDING = ("resolved", "shift")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Incident:
    """The newest event of one open (or just ended) incident."""

    event: AnomalyEvent
    opened: float  # the event time of its `open`
    ended: bool = False
    sent_at: float = 0.0  # wall time it was last sent

    @property
    def key(self) -> tuple[str, str | None]:
        return self.event.entity, self.event.system

    def labels(self) -> dict[str, str]:
        e = self.event
        labels = {"alertname": ALERT_NAME, "entity": e.entity, "model": e.model.name,
                  "incident": _iso(self.opened)}
        if e.system:
            labels["system"] = e.system
        return labels

    def alert(self, now: float, resend_seconds: float, plot_url: str = "") -> dict:
        """The Alertmanager v2 alert of this incident as of ``now`` (wall time)."""
        e = self.event
        annotations = {
            "summary": f"{e.entity}: anomaly score {e.calibrated_score:.2f} x its threshold ({e.state})",
            "calibrated_score": f"{e.calibrated_score:.3f}",
            "top_metrics": ", ".join(f"{m.metric} ({m.contribution:.0%})" for m in e.top_metrics),
            "event_id": e.event_id,
            "window": f"{_iso(e.window[0])} .. {_iso(e.window[1])}",
        }
        if e.related_entities:
            annotations["related_entities"] = ", ".join(f"{r.entity} ({r.calibrated_score:.2f})"
                                                        for r in e.related_entities)
        alert = {"labels": self.labels(), "annotations": annotations, "startsAt": _iso(self.opened),
                 "endsAt": _iso(e.ts if self.ended else now + 3 * resend_seconds)}
        if plot_url:
            alert["generatorURL"] = plot_url.format(entity=e.entity, start=self.opened, end=e.ts,
                                                    event_id=e.event_id)
        return alert


@dataclass
class Incidents:
    """Open incidents by entity (and system), from the events in order."""

    open: dict[tuple[str, str | None], Incident] = field(default_factory=dict)
    seen: dict[str, None] = field(default_factory=dict)  # recent event ids, in order (duplicates skipped)
    keep_ids: int = 100_000

    def apply(self, event: AnomalyEvent) -> Incident | None:
        """The incident ``event`` changes, or None (a repeated event, or one of no open incident)."""
        if event.event_id in self.seen:
            return None
        self.seen[event.event_id] = None
        if len(self.seen) > self.keep_ids:
            del self.seen[next(iter(self.seen))]
        key = (event.entity, event.system)
        current = self.open.get(key)
        if event.state == "open" or (current is None and event.state == "ongoing"):
            incident = Incident(event, event.window[0] if event.state == "ongoing" else event.ts)
            self.open[key] = incident
            return incident
        if current is None:
            return None
        current.event = event
        if event.state in ENDING:
            current.ended = True
            del self.open[key]
        return current

    def due(self, now: float, resend_seconds: float) -> list[Incident]:
        """Firing incidents not sent for a re-send period."""
        return [i for i in self.open.values() if now - i.sent_at >= resend_seconds]
