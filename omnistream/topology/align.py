"""System rows from entity points: the points of a system's entities, which arrive at slightly
different times and in any interleaving, aligned on one clock.

Row k of a system is the time ``k * step`` (a grid on the epoch, so that rows do not depend on
which point came first). A point belongs to the nearest row when it lies within ``tolerance``
of it (else it is dropped and counted); the first row is the earliest first row of the
entities. A row is released once every entity of the system has a point at or after it. So
when every entity sends every row, which rows come out and their values do not depend on how
the points interleave (entities on other partitions run ahead of each other by whole batches),
and a replay scores the same system windows.
An entity that stopped sending must not block the others: it counts as stopped once it has
held the rows back, ``wait_rows`` or more behind the newest row and sending nothing, for
``stop_after`` seconds of wall clock (a stall, not a batch of another partition running ahead;
the clock starts when it falls behind, so an outage in which nobody sends stops nobody), or
when ``max_pending`` rows wait. A released row
carries a stopped entity's last value forward for up to ``fill_rows`` rows, then has it missing
(NaN). Released rows come out in time order, each once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Row:
    ts: float
    values: np.ndarray  # (N, M), NaN = missing


@dataclass
class SystemAligner:
    nodes: list[str]
    metrics: list[str]
    step: float
    tolerance: float
    wait_rows: int = 3
    fill_rows: int = 2
    stop_after: float = 120.0
    max_pending: int = 1000
    next_row: int | None = None  # the first row not yet released (None: not known yet)
    pending: dict[int, dict[int, list[float]]] = field(default_factory=dict)  # row -> node -> values
    first: list[int] = field(default_factory=list)  # per node: the first row it sent (-1: none yet)
    newest: list[int] = field(default_factory=list)  # per node: the newest row it sent (-1: none yet)
    last_values: list[list[float] | None] = field(default_factory=list)
    last_row: list[int] = field(default_factory=list)
    behind_since: list[float | None] = field(default_factory=list)  # per node: wall clock it began holding rows back
    dropped: int = 0  # points off the grid or for rows already released

    def __post_init__(self) -> None:
        n = len(self.nodes)
        self.first = self.first or [-1] * n
        self.newest = self.newest or [-1] * n
        self.last_values = self.last_values or [None] * n
        self.last_row = self.last_row or [-1] * n
        self.behind_since = self.behind_since or [None] * n
        self._node = {name: i for i, name in enumerate(self.nodes)}
        self._metric = {name: j for j, name in enumerate(self.metrics)}

    def add(self, entity: str, ts: float, metrics: dict[str, float | None], now: float = 0.0) -> None:
        """One point of one entity of the system (other entities are ignored), received at
        wall-clock time ``now``."""
        i = self._node.get(entity)
        if i is None:
            return
        self.behind_since[i] = None  # it speaks
        k = round(ts / self.step)
        if (self.next_row is not None and k < self.next_row) or abs(ts - k * self.step) > self.tolerance:
            self.dropped += 1
            return
        if self.first[i] < 0:
            self.first[i] = k
        values = [math.nan] * len(self.metrics)
        for name, value in metrics.items():
            j = self._metric.get(name)
            if j is not None and value is not None:
                values[j] = float(value)
        self.pending.setdefault(k, {})[i] = values
        self.newest[i] = max(self.newest[i], k)

    def release(self, now: float = 0.0) -> list[Row]:
        """The rows that are now complete (or waited for long enough), oldest first, at wall
        clock ``now``."""
        out: list[Row] = []
        newest = max(self.newest, default=-1)
        if self.next_row is None:
            heard = [k for k in self.first if k >= 0]
            if not heard or (len(heard) < len(self.nodes) and not self._stopped(
                    [i for i, k in enumerate(self.first) if k < 0], newest, now)):
                return out
            self.next_row = min(heard)
        while self.next_row <= newest:
            k = self.next_row
            waiting = [i for i, n in enumerate(self.newest) if n < k]
            if waiting and not self._stopped(waiting, newest, now) and len(self.pending) <= self.max_pending:
                break
            got = self.pending.pop(k, {})
            values = np.full((len(self.nodes), len(self.metrics)), np.nan, dtype=np.float32)
            for i in range(len(self.nodes)):
                if i in got:
                    values[i] = got[i]
                    self.last_values[i], self.last_row[i] = got[i], k
                elif self.last_values[i] is not None and k - self.last_row[i] <= self.fill_rows:
                    values[i] = self.last_values[i]
            out.append(Row(k * self.step, values))
            self.next_row += 1
        return out

    def _stopped(self, nodes: list[int], newest: int, now: float) -> bool:
        """Whether every one of ``nodes`` counts as stopped (see the module's docstring)."""
        stopped = True
        for i in nodes:
            if newest - self.newest[i] < self.wait_rows:
                stopped = False
                continue
            if self.behind_since[i] is None:
                self.behind_since[i] = now
            stopped = stopped and now - self.behind_since[i] >= self.stop_after
        return stopped or len(self.pending) > self.max_pending

    def to_dict(self) -> dict:
        """JSON-able state, for the changelog."""
        return {"nodes": self.nodes, "metrics": self.metrics, "step": self.step, "tolerance": self.tolerance,
                "wait_rows": self.wait_rows, "fill_rows": self.fill_rows, "stop_after": self.stop_after,
                "max_pending": self.max_pending, "behind_since": self.behind_since, "first": self.first,
                "next_row": self.next_row, "dropped": self.dropped, "newest": self.newest,
                "last_values": [_json_floats(v) for v in self.last_values], "last_row": self.last_row,
                "pending": {str(k): {str(i): _json_floats(v) for i, v in got.items()}
                            for k, got in self.pending.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> SystemAligner:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # fields of older versions go
        data["pending"] = {int(k): {int(i): _floats(v) for i, v in got.items()} for k, got in data["pending"].items()}
        data["last_values"] = [None if v is None else _floats(v) for v in data["last_values"]]
        return cls(**data)


def _json_floats(values: list[float] | None) -> list[float | None] | None:
    return None if values is None else [None if math.isnan(v) else v for v in values]


def _floats(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]
