"""The gap guard: a batch that jumps past records the broker holds is a hole; one past offsets
with no record (transaction markers, compaction) is not."""

from __future__ import annotations

from omnistream.stream.gaps import GapGuard

M = "metrics.svc-00"


def guard(committed: dict, records: set[int]) -> tuple[GapGuard, list]:
    asked = []

    def has_records(topic, partition, start, stop):
        asked.append((start, stop))
        return any(start <= r < stop for r in records)

    return GapGuard(lambda tps: {tp: committed[tp] for tp in tps}, has_records), asked


def test_the_first_batch_must_start_at_the_committed_offset():
    g, _ = guard({(M, 2): 116}, records=set(range(240)))
    assert g.holes([(M, 2, 172), (M, 2, 173)]) == [(M, 2, 116, 172)]  # records 116..171 went missing


def test_consecutive_and_redelivered_offsets_are_fine():
    g, asked = guard({(M, 2): 116}, records=set(range(240)))
    assert g.holes([(M, 2, 116), (M, 2, 117)]) == []
    assert g.holes([(M, 2, 110), (M, 2, 118)]) == []  # 110 again: at-least-once, nothing missing
    assert g.holes([(M, 2, 119), (M, 2, 121)]) == [(M, 2, 120, 121)]
    assert asked == [(120, 121)]  # the broker is asked only about jumps


def test_offsets_without_records_are_not_holes():
    g, _ = guard({(M, 0): 10}, records={10, 11, 14})  # 12 and 13: transaction markers
    assert g.holes([(M, 0, 10), (M, 0, 11), (M, 0, 14)]) == []
    assert g.expected[(M, 0)] == 15


def test_a_reset_reads_the_committed_offsets_again():
    g, _ = guard({(M, 0): 5}, records=set(range(100)))
    assert g.holes([(M, 0, 5)]) == []
    g.reset()
    assert g.holes([(M, 0, 7)]) == [(M, 0, 5, 7)]
