"""Level shifts: an entity whose level moves for good gets one shift event, is re-baselined and
asks for a refit, instead of alerting for ever; the worker and the offline evaluation decide
the same points the same way, however the stream is batched."""

import numpy as np
import pytest
from test_processor import make_processor, run_in_batches

from omnistream.detectors.calibration import Pot
from omnistream.detectors.export import load
from omnistream.detectors.shift import ShiftWatch, level_offset
from omnistream.offline.deployed import deployed_decisions
from omnistream.stream.config import ShiftSettings
from omnistream.stream.points import Point

STEP = 300.0  # ASD's five minutes
PERSIST = 4 * 3600.0
MOVED = 1500  # test point from which omi-1's level is moved
SHIFT = ShiftSettings(persist_seconds=PERSIST, share=0.8)


def test_a_block_mostly_flagged_is_a_shift():
    watch, state = ShiftWatch(600.0, 0.8), {}
    flags = [True] * 8 + [False] * 3  # 11 points over 600 s: 8 flagged is under 80 %
    assert not any(watch.observe(state, 60.0 * i, f) for i, f in enumerate(flags))
    assert [watch.observe(state, 660.0 + 60 * i, True) for i in range(11)][-1]  # the next block, all flagged
    assert not ShiftWatch(0.0, 0.8).observe({}, 0.0, True)  # off
    window = np.array([[1.0, np.nan], [3.0, np.nan], [2.0, np.nan]])
    assert level_offset(window, np.array([0.5, 1.0])).tolist() == [1.5, 0.0]


@pytest.fixture(scope="module")
def moved(asd_series):
    series = asd_series["omi-1"]
    test = series.test.copy()
    test[MOVED:] += 0.3  # every metric, about ten standard deviations
    return series.train, test


def stream(train, test, window):
    """The train split's last window-1 points (to fill the first window) and the test split."""
    rows = np.concatenate([train[-(window - 1):], test])
    names = [f"m{j:02d}" for j in range(rows.shape[1])]
    t0 = 1_700_000_000.0 - STEP * (window - 1)
    return [Point("omi-1", t0 + STEP * i, dict(zip(names, row.tolist())), "metrics.omi-1", 0)
            for i, row in enumerate(rows)]


def test_a_moved_level_gives_one_shift_and_the_worker_matches_the_offline_loop(trained_models, moved):
    folder, detectors = trained_models
    detector = detectors["omi-1"]
    train, test = moved
    points = stream(train, test, detector.window)
    settings = dict(shift={"persist_seconds": PERSIST, "share": 0.8})
    outcomes = run_in_batches(make_processor(folder, **settings), points, [500, 37, 1000])
    shifts = [e for o in outcomes for e in o.anomalies if e.state == "shift"]
    assert len(shifts) == 1 and shifts[0].ts >= points[detector.window - 1 + MOVED].ts
    refits = [t for o in outcomes for t in o.transfers if t.reason == "drift"]
    assert len(refits) == 1 and refits[0].data.to_ts == shifts[0].ts
    records = [s for o in outcomes for s in o.scores]
    after = [r for r in records if r.ts > shifts[0].ts]
    assert np.mean([r.calibrated_score >= 1 for r in after]) < 0.2  # the new normal is normal

    _, info = load(folder / "omi-1.pt")
    offline = deployed_decisions(detector, Pot.from_dict(info.calibration), train, test, STEP, SHIFT)
    assert [points[detector.window - 1 + i].ts for i in offline.shifts] == [shifts[0].ts]
    np.testing.assert_allclose([r.score for r in records], offline.scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([r.threshold for r in records], offline.thresholds, rtol=1e-6)

    unshifted = run_in_batches(make_processor(folder, shift={"persist_seconds": 0}), points, [1000])
    stuck = [s for o in unshifted for s in o.scores if s.ts > shifts[0].ts]
    assert np.mean([r.calibrated_score >= 1 for r in stuck]) > 0.8  # without it, anomalous for good


def test_offline_the_refit_a_shift_asks_for_scores_from_when_it_is_served(moved):
    from omnistream.offline.fit import Calibration, fit_entity

    train, test = moved
    calibration = Calibration()
    fitted = fit_entity("zscore", train, {}, calibration)
    given = []

    def refit(data):
        given.append(len(data))
        again = fit_entity("zscore", data, {}, calibration)
        return again.detector, again.pot

    out = deployed_decisions(fitted.detector, fitted.pot, train, test, STEP, SHIFT, refit=refit, refit_points=600)
    block = round(PERSIST / STEP)
    assert out.shifts and out.shifts[0] >= MOVED
    assert out.refits[0] == out.shifts[0] - block + 600 and given[0] == 600  # the data from the shifted block on
    assert out.flags[out.refits[0]:].mean() < 0.2 and out.refit_seconds > 0
    unrefitted = deployed_decisions(fitted.detector, fitted.pot, train, test, STEP, SHIFT)
    assert unrefitted.shifts[0] == out.shifts[0] and not unrefitted.refits
    np.testing.assert_array_equal(unrefitted.flags[:out.refits[0]], out.flags[:out.refits[0]])
