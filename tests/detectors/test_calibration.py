"""POT, SPOT and DSPOT against distributions whose quantiles are known."""

import numpy as np
import pytest

from omnistream.detectors.calibration import Pot, fit_pot, held_out_alarm_rate, spot_decisions


@pytest.mark.parametrize("q", [1e-3, 1e-4])
def test_pot_recovers_exponential_and_gaussian_quantiles(q):
    rng = np.random.default_rng(0)
    exponential = fit_pot(rng.exponential(2.0, 200_000), q=q)
    assert exponential.threshold == pytest.approx(-2.0 * np.log(q), rel=0.05)
    from scipy.stats import norm

    gaussian = fit_pot(rng.standard_normal(200_000), q=q)
    assert gaussian.threshold == pytest.approx(norm.isf(q), rel=0.05)


def test_spot_flags_the_share_it_promises_and_keeps_state_small():
    rng = np.random.default_rng(1)
    pot = fit_pot(rng.exponential(1.0, 20_000), q=1e-3)
    flags, thresholds = spot_decisions(pot, rng.exponential(1.0, 100_000))
    assert 0.0003 < flags.mean() < 0.003
    assert np.all(np.isfinite(thresholds))
    state = pot.to_dict()
    assert Pot.from_dict(state).threshold == pot.threshold and len(state["recent"]) == 0


def test_dspot_follows_a_drifting_level():
    rng = np.random.default_rng(2)
    drift = np.linspace(0, 20, 50_000)
    scores = drift + rng.exponential(1.0, 50_000)
    spot = fit_pot(scores[:5000], q=1e-3)
    dspot = fit_pot(scores[:5000], q=1e-3, depth=50)
    spot_flags, _ = spot_decisions(spot, scores[5000:])
    dspot_flags, _ = spot_decisions(dspot, scores[5000:])
    assert spot_flags.mean() > 0.5  # a fixed level drowns in the drift
    assert dspot_flags.mean() < 0.01


def test_calibrated_score_is_one_at_the_threshold_and_zero_at_the_median():
    pot = fit_pot(np.random.default_rng(3).exponential(1.0, 10_000), q=1e-3)
    assert pot.calibrated(pot.threshold) == pytest.approx(1.0)
    assert pot.calibrated(pot.center) == pytest.approx(0.0)


def test_bad_risk_is_refused():
    with pytest.raises(ValueError, match="risk q"):
        fit_pot(np.arange(100.0), q=0.5)


def test_held_out_alarm_rate_checks_the_promise_on_the_second_half():
    rng = np.random.default_rng(3)
    normal = rng.exponential(1.0, 20000)
    assert 0.005 < held_out_alarm_rate(normal, 1e-2) < 0.02  # the tail model holds: about q
    moved = np.concatenate([normal[:10000], 3.0 * normal[10000:]])  # the second half's level tripled
    assert held_out_alarm_rate(moved, 1e-2) > 0.1
    assert held_out_alarm_rate(normal[:150], 1e-2) is None  # 75 per half: too few for a 2 % tail
