"""The stall watch: a held partition with records waiting and a committed offset that stays put."""

from __future__ import annotations

from omnistream.stream.progress import ProgressWatch

TP, OTHER = ("m", 0), ("m", 1)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_waiting_without_progress_is_reported_after_stall_after():
    clock = Clock()
    watch = ProgressWatch(60.0, clock)
    assert watch.observe({TP: 5}, {TP: 120}) == []
    clock.now = 59.0
    assert watch.observe({TP: 5}, {TP: 240}) == []  # more records arrive: still no progress, not yet too long
    clock.now = 61.0
    assert watch.observe({TP: 5}, {TP: 240}) == ["m[0] at offset 5 of 240 for 61 s"]


def test_progress_or_catching_up_restarts_the_timer():
    clock = Clock()
    watch = ProgressWatch(60.0, clock)
    watch.observe({TP: 5, OTHER: 0}, {TP: 120, OTHER: 10})
    clock.now = 50.0
    watch.observe({TP: 6, OTHER: 10}, {TP: 120, OTHER: 10})  # TP moved on; OTHER caught up
    clock.now = 100.0
    assert watch.observe({TP: 6, OTHER: 10}, {TP: 120, OTHER: 10}) == []
    clock.now = 111.0
    assert watch.observe({TP: 6, OTHER: 10}, {TP: 120, OTHER: 10}) == ["m[0] at offset 6 of 120 for 61 s"]


def test_an_idle_partition_and_a_reset_never_count_as_stalls():
    clock = Clock()
    watch = ProgressWatch(60.0, clock)
    watch.observe({TP: 120}, {TP: 120, OTHER: 0})  # nothing waiting; OTHER never committed and empty
    watch.observe({TP: 5}, {TP: 120})
    clock.now = 59.0
    watch.reset()  # a rebalance or an outage: judged afresh
    watch.observe({TP: 5}, {TP: 120})
    clock.now = 100.0
    assert watch.observe({TP: 5}, {TP: 120}) == []
    clock.now = 200.0
    assert watch.observe({TP: 120}, {TP: 120}) == []
