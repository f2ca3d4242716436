"""Per-entity ring buffers of the last W points, appended a batch at a time.

A point is one timestamp and a vector over the entity's metric names (NaN = missing). Each
buffer serialises to a compact snapshot so that the Faust table changelog can restore it: a
JSON header (metrics, size, count, state) and the raw float64 times and float32 values,
compressed. 1,000 metrics (the most a record may carry) by 64 points stay under 300 kB, well
below Kafka's default 1 MB message limit; the JSON of version 1 was 1.26 MB.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import orjson

SNAPSHOT_MAGIC = b"OSW2"


@dataclass
class EntityWindow:
    metrics: list[str]
    size: int
    values: np.ndarray = field(init=False)
    ts: np.ndarray = field(init=False)
    count: int = 0
    state: dict = field(default_factory=dict)  # incident state and flags, owned by the decider

    def __post_init__(self) -> None:
        self.values = np.full((self.size, len(self.metrics)), np.nan, dtype=np.float32)
        self.ts = np.zeros(self.size, dtype=np.float64)
        self.index = {name: i for i, name in enumerate(self.metrics)}

    @property
    def last_ts(self) -> float:
        return float(self.ts[(self.count - 1) % self.size]) if self.count else float("-inf")

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def append(self, ts: np.ndarray, values: np.ndarray) -> None:
        """Append k points (ts (k,), values (k, M)) in time order."""
        k = len(ts)
        if k == 0:
            return
        if k > self.size:
            ts, values = ts[-self.size:], values[-self.size:]
            self.count += k - self.size
            k = self.size
        slots = (self.count + np.arange(k)) % self.size
        self.values[slots] = values
        self.ts[slots] = ts
        self.count += k

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """(ts, values) of the points held, oldest first: a copy, made once per batch."""
        start = self.count % self.size
        ts, values = np.roll(self.ts, -start), np.roll(self.values, -start, axis=0)
        n = min(self.count, self.size)
        return ts[self.size - n:], values[self.size - n:]

    def with_metrics(self, metrics: list[str]) -> EntityWindow:
        """The same points re-laid in another metric order (when a model arrives)."""
        other = EntityWindow(metrics, self.size, state=self.state)
        ts, values = self.ordered()
        cols = [self.index.get(name) for name in metrics]
        laid = np.full((len(ts), len(metrics)), np.nan, dtype=np.float32)
        for j, col in enumerate(cols):
            if col is not None:
                laid[:, j] = values[:, col]
        other.count = self.count - len(ts)
        other.append(ts, laid)
        return other

    def vectorise(self, points: list[dict[str, float | None]]) -> np.ndarray:
        """Rows in this entity's metric order; unknown names are ignored, absent ones are NaN."""
        out = np.full((len(points), len(self.metrics)), np.nan, dtype=np.float32)
        index = self.index
        for row, metrics in enumerate(points):
            for name, value in metrics.items():
                col = index.get(name)
                if col is not None and value is not None:
                    out[row, col] = value
        return out

    def snapshot(self) -> bytes:
        ts, values = self.ordered()
        header = orjson.dumps({"metrics": self.metrics, "size": self.size, "count": self.count, "n": len(ts),
                               "state": self.state})
        body = header + b"\0" + np.ascontiguousarray(ts, dtype=np.float64).tobytes() + \
            np.ascontiguousarray(values, dtype=np.float32).tobytes()
        return SNAPSHOT_MAGIC + zlib.compress(body, 1)

    @classmethod
    def restore(cls, blob: bytes) -> EntityWindow:
        if blob.startswith(SNAPSHOT_MAGIC):
            body = zlib.decompress(blob[len(SNAPSHOT_MAGIC):])
            header, raw = body.split(b"\0", 1)
            data = orjson.loads(header)
            n, m = data["n"], len(data["metrics"])
            ts = np.frombuffer(raw[:8 * n], dtype=np.float64)
            values = np.frombuffer(raw[8 * n:], dtype=np.float32).reshape(n, m)
        else:  # version 1: all JSON
            data = orjson.loads(blob)
            n = len(data["ts"])
            ts = np.asarray(data["ts"], dtype=np.float64)
            values = np.asarray(data["values"], dtype=np.float64).astype(np.float32).reshape(n, len(data["metrics"]))
        window = cls(data["metrics"], data["size"], state=data["state"])
        window.count = data["count"] - n  # so that the ring slots line up with the original
        if n:
            window.append(ts.copy(), values.copy())
        return window


def fill_missing(windows: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    # Each window is filled on its own, so a point's window never depends on batching.
    """Forward-fill NaN along time in (B, W, M) windows; what stays NaN gets ``fallback`` (M,) or 0."""
    mask = np.isnan(windows)
    if not mask.any():
        return windows
    b, w, m = windows.shape
    idx = np.where(~mask, np.arange(w)[None, :, None], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = np.take_along_axis(windows, idx, axis=1)
    still = np.isnan(filled)
    if still.any():
        fill = np.zeros(m, dtype=windows.dtype) if fallback is None else fallback.astype(windows.dtype)
        filled = np.where(still, fill[None, None, :], filled)
    return filled
