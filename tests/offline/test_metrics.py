import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omnistream.offline.metrics import anomaly_segments, best_f1, f1_at, point_adjust_scores, f1_at_test_label_threshold


def brute_best_f1(scores, labels, point_adjust):
    best = 0.0
    for t in np.unique(scores):
        best = max(best, f1_at(scores, labels, t, point_adjust).f1)
    return best


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_best_f1_equals_brute_force(data):
    n = data.draw(st.integers(2, 60))
    scores = data.draw(hnp.arrays(np.float64, n, elements=st.integers(0, 10).map(float)))
    labels = data.draw(hnp.arrays(np.int8, n, elements=st.integers(0, 1)))
    for pa in (False, True):
        got = best_f1(scores, labels, pa).f1
        assert abs(got - brute_best_f1(scores, labels, pa)) < 1e-12


def test_point_adjust_credits_the_whole_segment():
    labels = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
    scores = np.array([0, 0, 5, 0, 0, 0, 0, 0, 0], dtype=float)
    assert anomaly_segments(labels) == [(1, 4), (6, 8)]
    np.testing.assert_array_equal(point_adjust_scores(scores, labels), [0, 5, 5, 5, 0, 0, 0, 0, 0])
    plain = f1_at(scores, labels, 5)
    adjusted = f1_at(scores, labels, 5, point_adjust=True)
    assert plain.recall == 1 / 5 and adjusted.recall == 3 / 5 and adjusted.precision == 1.0


def test_validation_threshold_uses_first_half_only():
    labels = np.array([0, 1, 0, 0, 0, 1, 0, 0])
    scores = np.array([0, 3, 0, 0, 0, 2, 0, 0], dtype=float)
    result = f1_at_test_label_threshold(scores, labels)
    assert result.threshold == 3.0 and result.f1 == 0.0
