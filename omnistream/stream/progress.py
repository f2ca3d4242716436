"""Stalled consumption: a partition this worker holds, with records waiting, whose committed
offset has not moved for ``kafka.stall_after`` seconds.

The worker's event loop can be turning (``/live`` is fine) while a partition makes no progress:
the consumer library may stop handing one partition's records to the agent after a restart or a
rebalance, or stop committing past a gap in its acknowledgements (both seen with Faust). Nothing
would be lost, but nothing would be scored either, silently. The committed offsets on the broker
are the ground truth of progress, so they are what is watched; a stall ends the process, and its
restart resumes from those offsets (at-least-once, as after any crash).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

TopicPartition = tuple[str, int]


class ProgressWatch:
    """Remembers, per partition, the committed offset and since when it has not moved while
    records were waiting."""

    def __init__(self, stall_after: float, clock: Callable[[], float] = time.monotonic):
        self.stall_after, self.clock = stall_after, clock
        self._since: dict[TopicPartition, tuple[int, float]] = {}  # tp -> (committed, waiting since)

    def reset(self) -> None:
        """Forget every timer: after a rebalance or an outage, progress is judged afresh."""
        self._since.clear()

    def observe(self, committed: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]) -> list[str]:
        """Take one look (committed and end offsets of the partitions held now); return a line
        per partition stalled for ``stall_after`` seconds or more."""
        now = self.clock()
        since = {}
        for tp, end in ends.items():
            done = committed.get(tp, 0)
            if end <= done:
                continue  # caught up
            held = self._since.get(tp)
            since[tp] = held if held is not None and held[0] == done else (done, now)
        self._since = since
        return [f"{topic}[{partition}] at offset {done} of {ends[topic, partition]} for {now - t:.0f} s"
                for (topic, partition), (done, t) in sorted(since.items()) if now - t >= self.stall_after]
