import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from omnistream.stream.windows import EntityWindow, fill_missing


@settings(max_examples=50, deadline=None)
@given(size=st.integers(1, 10), chunks=st.lists(st.integers(0, 15), min_size=1, max_size=6))
def test_ring_keeps_the_last_points_in_order(size, chunks):
    window = EntityWindow(["a", "b"], size)
    everything = []
    t = 0
    for k in chunks:
        ts = np.arange(t, t + k, dtype=float)
        vals = np.stack([ts, -ts], axis=1).astype(np.float32)
        window.append(ts, vals)
        everything.extend(ts.tolist())
        t += k
    assert window.count == len(everything)
    ts, vals = window.ordered()
    n = min(size, len(everything))
    np.testing.assert_array_equal(ts, everything[len(everything) - n:])
    np.testing.assert_array_equal(vals[:, 0], everything[len(everything) - n:])
    restored = EntityWindow.restore(window.snapshot())
    assert restored.count == window.count
    np.testing.assert_array_equal(restored.ordered()[0], ts)
    relaid = window.with_metrics(["b", "c"])
    np.testing.assert_array_equal(relaid.ordered()[1][:, 0], vals[:, 1])
    assert np.isnan(relaid.ordered()[1][:, 1]).all() and relaid.count == window.count


def test_vectorise_ignores_unknown_and_marks_missing():
    window = EntityWindow(["cpu", "mem"], 4)
    rows = window.vectorise([{"cpu": 1.0, "disk": 5.0}, {"mem": None, "cpu": float("nan")}])
    assert rows[0, 0] == 1.0 and np.isnan(rows[0, 1]) and np.isnan(rows[1]).all()


def test_fill_missing_forward_fills_then_falls_back():
    x = np.array([[[np.nan, 1], [2, np.nan], [np.nan, np.nan]]], dtype=np.float32)
    got = fill_missing(x, fallback=np.array([9, 9]))
    np.testing.assert_array_equal(got[0], [[9, 1], [2, 1], [2, 1]])


def test_snapshot_of_the_widest_record_fits_a_kafka_message_and_round_trips():
    names = [f"metric_name_number_{i:04d}" for i in range(1000)]  # records carry at most 1,000 metrics
    window = EntityWindow(names, 64, state={"incident": {"opened": 1.0}})
    rng = np.random.default_rng(0)
    rows = [{n: (None if rng.random() < 0.1 else float(rng.normal())) for n in names} for _ in range(70)]
    window.append(np.arange(70, dtype=float) + 1, window.vectorise(rows))
    blob = window.snapshot()
    assert len(blob) < 1_000_000 // 3
    back = EntityWindow.restore(blob)
    np.testing.assert_array_equal(back.ordered()[0], window.ordered()[0])
    np.testing.assert_array_equal(back.ordered()[1], window.ordered()[1])  # NaN where missing, bit for bit
    assert (back.count, back.metrics, back.state) == (window.count, names, window.state)


def test_snapshots_of_the_previous_json_format_still_restore():
    old = orjson.dumps({"metrics": ["a", "b"], "size": 4, "count": 3, "ts": [3.0, 4.0, 5.0],
                        "values": [[1.0, None], [2.0, 3.0], [4.0, 5.0]], "state": {"x": 1}})
    window = EntityWindow.restore(old)
    assert window.count == 3 and window.last_ts == 5.0 and window.state == {"x": 1}
    np.testing.assert_array_equal(window.ordered()[1], np.array([[1, np.nan], [2, 3], [4, 5]], np.float32))
