"""Samples of one entity gathered into one point per step, deterministically.

A step is ``[k * step, (k + 1) * step)`` on the epoch's grid and becomes the point at
``k * step`` once the entity's newest sample is ``lateness`` past its end; a sample for a
closed step is late and dropped (counted). A gauge's value is the ``aggregate`` of its
samples in the step; a counter's is its rate since its last sample of an earlier step, with a
reset (the value falls, or its start time changes) counted from zero as Prometheus's
``rate`` does. A metric without samples in a step is missing from the point, not zero.

Order-free and idempotent: samples of a step are kept by timestamp (a repeated sample
replaces itself), so any arrival order within the lateness gives the same points. The state
of every open step is saved with the entity's window (``snapshot``) together with the offset
of the last internal message applied, so that after a restart a redelivered message is
skipped rather than counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from omnistream.ingest.mapping import SourceSettings

# A packed sample on the internal points topic: metric, ts, value (None: NaN), "g" | "c",
# counter start, and (mean metric, "sum" | "count") or None.
Packed = list


def _prefer(old: float | None, new: float) -> float:
    """Of two samples at one timestamp, the larger (NaN below any number): order-free."""
    if old is None or math.isnan(old):
        return new
    return old if math.isnan(new) else max(old, new)


@dataclass
class EntitySteps:
    """One entity's open steps from one source (JSON-able, for the changelog)."""

    gauges: dict[int, dict[str, dict[float, float]]] = field(default_factory=dict)  # step -> metric -> ts -> v
    counters: dict[int, dict[str, list]] = field(default_factory=dict)  # step -> metric -> [ts, v, start] (last)
    last_counter: dict[str, list] = field(default_factory=dict)  # metric -> [ts, v, start] of a closed step
    means: dict[str, list] = field(default_factory=dict)  # _sum / _count metric -> [mean metric, part]
    newest: float = -math.inf
    closed: int | None = None  # steps below this index are closed
    offset: int = -1  # offset of the last internal message applied
    partition: int = 0

    def dumps(self) -> bytes:
        return orjson.dumps({
            "gauges": {str(k): {m: list(s.items()) for m, s in g.items()} for k, g in self.gauges.items()},
            "counters": {str(k): c for k, c in self.counters.items()}, "last_counter": self.last_counter,
            "means": self.means, "newest": self.newest if math.isfinite(self.newest) else None,
            "closed": self.closed, "offset": self.offset, "partition": self.partition,
        })

    @classmethod
    def loads(cls, blob: bytes) -> EntitySteps:
        d = orjson.loads(blob)
        nan = math.nan
        return cls({int(k): {m: {t: (nan if v is None else v) for t, v in s} for m, s in g.items()}
                    for k, g in d["gauges"].items()},
                   {int(k): {m: [t, nan if v is None else v, start] for m, (t, v, start) in c.items()}
                    for k, c in d["counters"].items()}, d["last_counter"], d["means"],
                   -math.inf if d["newest"] is None else d["newest"], d["closed"], d["offset"], d["partition"])


@dataclass
class Assembled:
    points: list[tuple[float, dict[str, float]]]
    late: int = 0


class Assembler:
    """Every entity's open steps, per source topic; ``restore`` reads a saved state by key."""

    def __init__(self, sources: dict[str, SourceSettings], restore: Callable[[str], bytes | None]):
        self.sources, self.restore = sources, restore
        self.states: dict[str, EntitySteps] = {}

    @staticmethod
    def key(entity: str, source: str) -> str:
        return f"{entity}|{source}"  # '|' is in no entity name (stream.records.NAME)

    def state(self, entity: str, source: str, partition: int) -> EntitySteps:
        key = self.key(entity, source)
        state = self.states.get(key)
        if state is None:
            blob = self.restore(key)
            state = EntitySteps.loads(blob) if blob else EntitySteps(partition=partition)
            self.states[key] = state
        return state

    def add(self, entity: str, source: str, partition: int, offset: int, samples: list[Packed]) -> Assembled:
        """Apply one internal message's samples; the points of the steps it closes, in order."""
        settings, state = self.sources[source], self.state(entity, source, partition)
        if offset <= state.offset:  # applied before a restart: its samples are in the state already
            return Assembled([])
        state.offset, state.partition = offset, partition
        step, late = settings.step_seconds, 0
        for metric, ts, value, kind, start, mean in samples:
            k = math.floor(ts / step)
            if state.closed is not None and k < state.closed:
                late += 1
                continue
            state.newest = max(state.newest, ts)
            value = math.nan if value is None else value
            if kind == "c":
                held = state.counters.setdefault(k, {}).get(metric)
                if held is None or ts > held[0] or (ts == held[0] and _prefer(held[1], value) == value):
                    state.counters[k][metric] = [ts, value, start]
            else:
                by_ts = state.gauges.setdefault(k, {}).setdefault(metric, {})
                by_ts[ts] = _prefer(by_ts.get(ts), value)
            if mean is not None:
                state.means[metric] = mean
        return Assembled(self._close(state, settings), late)

    def _close(self, state: EntitySteps, settings: SourceSettings) -> list[tuple[float, dict[str, float]]]:
        step = settings.step_seconds
        boundary = math.floor((state.newest - settings.lateness_seconds) / step)  # steps below it are due
        if state.closed is not None and boundary <= state.closed:
            return []
        points = []
        for k in sorted(set(state.gauges) | set(state.counters)):
            if k >= boundary:
                break
            metrics = self._gauges(state.gauges.pop(k, {}), settings.aggregate)
            metrics.update(self._rates(state, state.counters.pop(k, {})))
            self._means(state, metrics)
            if metrics:
                points.append((k * step, metrics))
        state.closed = boundary
        return points

    @staticmethod
    def _gauges(gauges: dict[str, dict[float, float]], aggregate: str) -> dict[str, float]:
        out = {}
        for metric, by_ts in gauges.items():
            if aggregate == "last":
                value = by_ts[max(by_ts)]
            else:
                values = [v for v in by_ts.values() if not math.isnan(v)]
                value = (math.fsum(values) / len(values) if aggregate == "mean" else
                         max(values) if aggregate == "max" else min(values)) if values else math.nan
            if not math.isnan(value):
                out[metric] = value
        return out

    @staticmethod
    def _rates(state: EntitySteps, counters: dict[str, list]) -> dict[str, float]:
        out = {}
        for metric, (ts, value, start) in sorted(counters.items()):
            if math.isnan(value):
                continue
            prev = state.last_counter.get(metric)
            state.last_counter[metric] = [ts, value, start]
            if prev is None or ts <= prev[0]:
                continue
            reset = value < prev[1] or (start is not None and prev[2] is not None and start != prev[2])
            out[metric] = (value if reset else value - prev[1]) / (ts - prev[0])
        return out

    @staticmethod
    def _means(state: EntitySteps, metrics: dict[str, float]) -> None:
        parts: dict[str, dict[str, float]] = {}
        for metric, (mean, part) in state.means.items():
            if metric in metrics:
                parts.setdefault(mean, {})[part] = metrics[metric]
        for mean, pair in parts.items():
            if pair.get("count", 0.0) > 0 and "sum" in pair:
                metrics[mean] = pair["sum"] / pair["count"]

    def snapshots(self, keys: set[str]) -> dict[str, tuple[int, bytes]]:
        """key -> (partition, state) of ``keys``, for the changelog."""
        return {key: (self.states[key].partition, self.states[key].dumps()) for key in keys}

    def forget(self, partitions: set[int]) -> int:
        """Drop the states of revoked partitions (they are in the changelog)."""
        gone = [key for key, state in self.states.items() if state.partition in partitions]
        for key in gone:
            del self.states[key]
        return len(gone)
