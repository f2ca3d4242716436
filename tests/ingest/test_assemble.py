"""Samples to points: one point per entity per step, the same whatever the arrival order
within the lateness, repeated samples and restarts included; counters become rates."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from omnistream.ingest.assemble import Assembler
from omnistream.ingest.mapping import SourceSettings

STEP = 60.0
T0 = 1_700_000_040.0  # on the 60 s grid


def source(**kw) -> SourceSettings:
    return SourceSettings(topic="t", format="influx_line", step_seconds=STEP, lateness_seconds=STEP, **kw)


def run(messages: list[list], settings: SourceSettings | None = None, assembler: Assembler | None = None,
        first_offset: int = 0):
    a = assembler or Assembler({"t": settings or source()}, lambda key: None)
    points, late = [], 0
    for i, samples in enumerate(messages):
        got = a.add("web-1", "t", 3, first_offset + i, samples)
        points += got.points
        late += got.late
    return points, late, a


def stream(seed: int, steps: int = 12) -> list[list]:
    """Samples of two gauges and a counter, several per step at drifting times, one per message."""
    rng = np.random.default_rng(seed)
    out, total = [], 0.0
    for k in range(steps):
        for j in range(3):
            ts = T0 + k * STEP + 20 * j + float(rng.integers(0, 5))
            total += float(rng.integers(0, 100))
            out += [[["cpu", ts, float(rng.normal()), "g", None, None]], [["reqs", ts, total, "c", None, None]]]
            if rng.random() < 0.7:  # a metric sometimes missing
                out.append([["mem", ts, float(rng.random()), "g", None, None]])
    return out


def shuffled_within_two_steps(messages: list[list], seed: int) -> list[list]:
    rng = np.random.default_rng(seed)
    blocks: dict[int, list] = {}
    for m in messages:
        blocks.setdefault(math.floor((m[0][1] - T0) / (2 * STEP)), []).append(m)
    out = []
    for k in sorted(blocks):
        out += [blocks[k][i] for i in rng.permutation(len(blocks[k]))]
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["last", "mean", "max", "min"]))
def test_points_do_not_depend_on_arrival_order_or_repeats(seed, aggregate):
    messages = stream(seed)
    reference, late, _ = run(messages, source(aggregate=aggregate))
    assert late == 0 and len(reference) == 10  # the last two steps wait for later samples
    moved = shuffled_within_two_steps(messages, seed + 1)
    repeated = [m for m in moved for _ in range(1 + (hash(m[0][1]) % 2))]  # redelivered by the ingest hop
    for order in (moved, repeated):
        points, late, _ = run(order, source(aggregate=aggregate))
        assert points == reference and late == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_a_restart_from_the_saved_state_loses_and_repeats_nothing(seed, data):
    messages = shuffled_within_two_steps(stream(seed), seed)
    reference, _, _ = run(messages)
    saved_at = data.draw(st.integers(1, len(messages) - 1))
    resumed_from = data.draw(st.integers(0, saved_at))  # the committed offset lags the saved state
    before, _, first = run(messages[:saved_at])
    blob = first.snapshots({Assembler.key("web-1", "t")})[Assembler.key("web-1", "t")][1]
    restored = Assembler({"t": source()}, lambda key: blob)
    after, _, _ = run(messages[resumed_from:], assembler=restored, first_offset=resumed_from)
    assert before + after == reference


def test_gauges_counters_resets_and_missing_metrics():
    messages = [
        [["cpu", T0 + 5, 1.0, "g", None, None], ["reqs", T0 + 5, 100.0, "c", None, None]],
        [["cpu", T0 + 50, 3.0, "g", None, None], ["reqs", T0 + 50, 190.0, "c", None, None]],
        [["reqs", T0 + 65, 220.0, "c", None, None]],  # cpu missing in this step
        [["cpu", T0 + 125, 2.0, "g", None, None], ["reqs", T0 + 125, 30.0, "c", None, None]],  # a reset
        [["cpu", T0 + 185, math.nan, "g", None, None], ["reqs", T0 + 185, 90.0, "c", None, None]],  # stale
        [["cpu", T0 + 400, 0.0, "g", None, None]],  # closes every step up to T0 + 300
    ]
    points, late, a = run(messages, source(aggregate="mean"))
    assert points == [(T0, {"cpu": 2.0}), (T0 + 60, {"reqs": 30 / 15}), (T0 + 120, {"cpu": 2.0, "reqs": 30 / 60}),
                      (T0 + 180, {"reqs": 60 / 60})]
    got = a.add("web-1", "t", 3, 99, [["cpu", T0 + 10, 5.0, "g", None, None]])
    assert got.late == 1 and got.points == []


def test_a_new_start_time_is_a_reset_and_histogram_means_come_from_rates():
    def histogram(ts, total, count, start):
        return [["lat_sum", ts, total, "c", start, ("lat_mean", "sum")],
                ["lat_count", ts, count, "c", start, ("lat_mean", "count")]]

    messages = [histogram(T0 + 1, 10.0, 100.0, T0 - 600), histogram(T0 + 61, 16.0, 130.0, T0 - 600),
                histogram(T0 + 121, 20.0, 150.0, T0 + 100),  # restarted: counts from zero again
                [["other", T0 + 300, 1.0, "g", None, None]]]
    points, _, _ = run(messages)
    assert points[0] == (T0 + 60, {"lat_sum": 0.1, "lat_count": 0.5, "lat_mean": 0.2})
    assert points[1] == (T0 + 120, {"lat_sum": 20 / 60, "lat_count": 150 / 60, "lat_mean": 20 / 150})
