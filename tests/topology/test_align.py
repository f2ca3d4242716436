"""System rows from entity points that arrive a little apart and in any order."""

import itertools

import numpy as np

from omnistream.topology.align import SystemAligner


def aligner(**kw):
    return SystemAligner(["api", "db"], ["cpu", "lat"], step=60.0, tolerance=20.0, **kw)


def test_rows_are_released_when_every_entity_has_reached_them_whatever_the_order():
    points = [(e, 1000.0 + 60 * k + (3 if e == "db" else 0), {"cpu": k, "lat": 10 * k + (e == "db")})
              for k in range(4) for e in ("api", "db")]
    results = []
    for order in itertools.islice(itertools.permutations(points), 0, 2000, 97):
        a = aligner()
        rows = []
        for p in sorted(order, key=lambda p: p[1] if p[0] == "api" else 0):  # api in order, db all first
            a.add(*p)
            rows += a.release()
        results.append([(r.ts, r.values.tolist()) for r in rows])
    assert all(r == results[0] for r in results) and len(results[0]) == 4
    assert results[0][1] == (1080.0, [[1.0, 10.0], [1.0, 11.0]])  # rows on the minute grid


def test_a_silent_entity_is_carried_forward_then_missing_and_blocks_nobody():
    a = aligner(wait_rows=2, fill_rows=1, stop_after=30.0)
    a.add("db", 1000.0, {"cpu": 5.0}, now=0.0)
    for k in range(6):
        a.add("api", 1000.0 + 60 * k, {"cpu": float(k), "lat": 1.0}, now=10.0)
    assert len(a.release(now=10.0)) == 1  # db may only be behind by a batch: wait
    rows = a.release(now=40.0)  # 5 rows behind and silent since 10 s, 30 s ago: stopped
    assert [r.ts for r in rows] == [1080.0, 1140.0, 1200.0, 1260.0, 1320.0]
    db = [r.values[1, 0] for r in rows]
    assert db[0] == 5.0 and np.isnan(db[1:]).all()  # carried one row, then missing
    assert np.isnan(rows[0].values[1, 1])  # a metric it never sent is missing
    bounded = aligner(max_pending=3)
    for k in range(6):
        bounded.add("api", 1000.0 + 60 * k, {"cpu": 1.0})
    assert len(bounded.release()) == 3 and len(bounded.pending) == 3


def test_off_grid_and_late_points_are_dropped_and_the_state_survives_a_round_trip():
    a = aligner()
    a.add("api", 1200.0, {"cpu": 1.0})
    a.add("db", 1230.0, {"cpu": 1.0})  # half a step off the minute grid: no row
    a.add("db", 1201.0, {"cpu": 2.0, "mem": 3.0})  # an unknown metric is ignored
    assert len(a.release()) == 1
    a.add("api", 1200.0, {"cpu": 9.0})  # a row already released
    assert a.dropped == 2
    a.add("api", 1260.0, {"cpu": 4.0})
    b = SystemAligner.from_dict(a.to_dict())
    b.add("db", 1262.0, {"cpu": 5.0})
    (row,) = b.release()
    assert row.ts == 1260.0 and row.values[:, 0].tolist() == [4.0, 5.0] and b.dropped == 2


def test_an_outage_in_which_nobody_sends_stops_nobody():
    a = aligner(wait_rows=2, stop_after=30.0)
    for k in range(3):
        a.add("api", 1000.0 + 60 * k, {"cpu": 1.0}, now=0.0)
        a.add("db", 1000.0 + 60 * k, {"cpu": 2.0}, now=0.0)
    assert len(a.release(now=0.0)) == 3
    for k in range(3, 8):  # 10 minutes later api's partition comes back first, db's a batch after
        a.add("api", 1000.0 + 60 * k, {"cpu": 1.0}, now=600.0)
    assert a.release(now=600.0) == [] and a.release(now=610.0) == []  # db held rows back only 10 s
    for k in range(3, 8):
        a.add("db", 1000.0 + 60 * k, {"cpu": 2.0}, now=612.0)
    rows = a.release(now=612.0)
    assert len(rows) == 5 and not np.isnan(np.stack([r.values[:, 0] for r in rows])).any()
