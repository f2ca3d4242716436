"""The seasonal baseline: periods found by CMND, the z-score where there are none."""

import numpy as np

from omnistream.detectors import seasonal
from omnistream.detectors.base import point_scores
from omnistream.detectors.registry import create


def daily(length: int, period: int, seed: int = 0) -> np.ndarray:
    """A metric with a sharp peak once per period and a noise-only metric (T, 2)."""
    rng = np.random.default_rng(seed)
    phase = np.arange(length) % period
    peak = np.where((phase >= period // 2) & (phase < period // 2 + period // 24), 5.0, 0.0)
    return np.stack([peak + 0.1 * rng.standard_normal(length), rng.standard_normal(length)], 1).astype(np.float32)


def test_periods_are_found_where_there_are_cycles_only():
    periods = seasonal.find_periods(daily(2000, 96), seasonal.SeasonalConfig())
    assert abs(int(periods[0]) - 96) <= 1 and periods[1] == 0


def test_no_period_beyond_a_third_of_the_history():
    assert not seasonal.find_periods(daily(250, 96), seasonal.SeasonalConfig()).any()


def test_the_window_follows_the_longest_period():
    detector = create("seasonal", phase_slack=2).fit_series(daily(2000, 96))
    assert detector.window == int(detector.periods.max()) + 3
    assert "1 of 2 metrics" in detector.note


def test_without_cycles_it_is_the_zscore():
    noise = np.random.default_rng(3).standard_normal((600, 3)).astype(np.float32)
    a = point_scores(create("seasonal").fit_series(noise[:400]), noise[400:])
    b = point_scores(create("zscore").fit_series(noise[:400]), noise[400:])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_daily_peak_is_normal_and_a_missing_one_is_not():
    series = daily(2400, 96)
    detector = create("seasonal").fit_series(series[:1600])
    zscore = create("zscore").fit_series(series[:1600])
    test = series[1600:].copy()
    # The z-score flags every peak; the seasonal residual stays within a few of its sigmas.
    assert point_scores(zscore, test, history=series[:1600])[:, 0].max() > 4
    assert point_scores(detector, test, history=series[:1600])[:, 0].max() < 6
    peak = np.flatnonzero(test[:, 0] > 2.5)[:4]  # one peak: the next day would copy its absence
    test[peak, 0] = 0.0  # a peak that did not come
    assert point_scores(detector, test, history=series[:1600])[peak, 0].min() > 10


def test_a_period_too_long_for_the_state_snapshot_is_dropped():
    wide = np.repeat(daily(3000, 960), 80, axis=1)  # 160 metrics x 960 points > MAX_WINDOW_VALUES
    detector = create("seasonal", max_period=1000).fit_series(wide)
    assert not detector.periods.any() and detector.window == 1
