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


def independent_point_adjust(flags, labels):
    """Point-adjust written from its definition, one point at a time: walk each run of
    labelled points; if any of its points is flagged, flag all of them."""
    out = [bool(f) for f in flags]
    i = 0
    while i < len(labels):
        if labels[i]:
            j = i
            while j < len(labels) and labels[j]:
                j += 1
            if any(out[i:j]):
                out[i:j] = [True] * (j - i)
            i = j
        else:
            i += 1
    return out


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_point_adjust_matches_an_independent_implementation(data):
    from omnistream.offline.metrics import counts

    n = data.draw(st.integers(1, 80))
    labels = data.draw(hnp.arrays(np.int8, n, elements=st.integers(0, 1)))
    scores = data.draw(hnp.arrays(np.float64, n, elements=st.integers(0, 6).map(float)))
    threshold = data.draw(st.integers(0, 7).map(float))
    adjusted = np.array(independent_point_adjust(scores >= threshold, labels))
    y = labels.astype(bool)
    tp, fp, fn = int((adjusted & y).sum()), int((adjusted & ~y).sum()), int((~adjusted & y).sum())
    got = counts(scores >= threshold, labels, point_adjust=True)
    assert (got.tp, got.fp, got.fn) == (tp, fp, fn)
    want_f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    assert abs(f1_at(scores, labels, threshold, point_adjust=True).f1 - want_f1) < 1e-12
