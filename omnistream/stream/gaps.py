"""Skipped records: a batch whose offsets jump past records this process never received.

Faust's fetch loop can drop records around a rebalance or a restart: a record whose hand-over
is cut short when the flow is suspended still counts as read, and records fetched before a
seek to the committed offsets can arrive before the re-read ones, which are then dropped as
already read. Later records of the same partition are processed, so an entity's window moves
past the hole and those points are never scored (and the commit stays behind the hole for
ever). The guard checks each batch before anything of it is processed: per partition, the
first offset must be the group's committed offset (or follow the last one seen), and a jump is
only accepted when the broker holds no record in between (transaction markers and compaction
leave such gaps). A real hole ends the process, before any output or state of the batch, and
its restart re-reads from the committed offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

TopicPartition = tuple[str, int]
Hole = tuple[str, int, int, int]  # topic, partition, first missing offset, next offset received


class GapGuard:
    """The next offset expected per partition held by this process, since the last rebalance."""

    def __init__(self, committed: Callable[[list[TopicPartition]], dict[TopicPartition, int]],
                 has_records: Callable[[str, int, int, int], bool]):
        self.committed, self.has_records = committed, has_records
        self.expected: dict[TopicPartition, int] = {}

    def reset(self) -> None:
        """After a rebalance the consumer starts again from the committed offsets."""
        self.expected.clear()

    def holes(self, offsets: Iterable[tuple[str, int, int]]) -> list[Hole]:
        """The real holes among a batch's (topic, partition, offset), in arrival order; the
        expected offsets move on past the batch. Blocking: it may ask the broker."""
        batch = list(offsets)
        new = sorted({(t, p) for t, p, _ in batch} - self.expected.keys())
        if new:
            self.expected.update(self.committed(new))
        found = []
        for topic, partition, offset in batch:
            tp = (topic, partition)
            want = self.expected.get(tp, offset)
            if offset > want and self.has_records(topic, partition, want, offset):
                found.append((topic, partition, want, offset))
            if offset >= want:  # an earlier offset is a record delivered again: nothing missing
                self.expected[tp] = offset + 1
        return found
