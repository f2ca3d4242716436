"""The up-front checks: an entity that training would reject, or would silently turn into a
flood of alerts, is refused before any work, with the message training itself gives."""

import numpy as np
import pytest

from omnistream.offline.checks import check_entity, screen
from omnistream.offline.datasets import DataError, EntitySeries
from omnistream.offline.fit import Calibration, fit_entity

RNG = np.random.default_rng(0)


def entity(train, test=None, labels=None, name="e"):
    test = RNG.normal(size=(50, train.shape[1])).astype(np.float32) if test is None else test
    labels = np.zeros(len(test), np.int8) if labels is None else labels
    return EntitySeries(name, np.asarray(train, np.float32), np.asarray(test, np.float32), labels)


def normal(rows, metrics=2):
    return RNG.normal(size=(rows, metrics)).astype(np.float32)


@pytest.mark.parametrize("series, message", [
    (entity(np.full((400, 3), np.nan)), "no observed value"),
    (entity(np.ones((400, 3))), "every metric is constant"),
    (entity(np.c_[np.ones(400), np.full(400, np.nan)]), "every metric is constant"),
    (entity(np.r_[normal(399), [[np.inf, 0]]]), "train split holds 1 infinite values"),
    (entity(normal(400), normal(50, 3)), "train has 2 metrics, test has shape"),
    (entity(normal(400), labels=np.zeros(49, np.int8)), "49 test labels for 50 test rows"),
    (entity(normal(400), normal(0)), "test split is empty"),
])
def test_unusable_entities_are_refused_with_their_reason(series, message):
    with pytest.raises(DataError, match=message):
        check_entity(series, 10, 0.2, labelled=True)


def test_the_length_rule_and_its_message_are_those_of_training():
    short = normal(186, 1)
    with pytest.raises(DataError) as up_front:
        check_entity(entity(short), 64, 0.2, labelled=True)
    with pytest.raises(DataError) as training:
        fit_entity("dcvae", short, {"window": 64})
    assert str(up_front.value) == str(training.value)
    assert "history of 186 points is too short to train a window of 64" in str(up_front.value)
    check_entity(entity(normal(300, 1)), 32, 0.2, labelled=True)  # a longer history fits


def test_screen_keeps_the_usable_and_checks_the_longest_window():
    data = [entity(normal(400), name="ok"), entity(normal(300), name="short"), entity(np.ones((400, 2)), name="flat")]
    kept, left_out = screen(data, {"zscore": 1, "long": 256, "usad": 10}, Calibration().fraction, labelled=True)
    assert [s.entity for s in kept] == ["ok"]
    assert {e.entity: e.reason[:40] for e in left_out} == {
        "short": "history of 300 points is too short to tr", "flat": "every metric is constant (or missing) in"}
    kept, _ = screen(data[:2], {"zscore": 1}, 0.2, labelled=False)
    assert [s.entity for s in kept] == ["ok", "short"]
