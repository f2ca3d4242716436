"""What the transfer service refuses to train on, with the reason a status will carry."""

import numpy as np
import pytest

from omnistream.transfer.service import RequestFailed, entity_series

METRICS = ["cpu", "mem"]


def rows(values):
    return [(1000.0 + i, dict(zip(METRICS, v))) for i, v in enumerate(values)]


def test_good_rows_become_a_series_in_registry_order():
    data = rows(np.random.default_rng(0).normal(size=(100, 2)).tolist())
    data[5] = (data[5][0], {"mem": 1.0, "cpu": None, "extra": 3.0})  # order, null and unknown names
    series = entity_series(data, METRICS)
    assert series.shape == (100, 2) and np.isnan(series[5, 0]) and series[5, 1] == 1.0


@pytest.mark.parametrize("values, reason", [
    ([[1.0, 2.0]] * 100, "constant"),
    ([[None, None]] * 60 + [[1.0, 2.0]] * 40, "60% of the entity's values are missing"),
])
def test_unusable_data_is_refused(values, reason):
    with pytest.raises(RequestFailed, match=reason):
        entity_series(rows(values), METRICS)


def test_missing_metrics_are_named():
    data = [(1.0 + i, {"cpu": float(i), "disk": 1.0}) for i in range(100)]
    with pytest.raises(RequestFailed, match="lacks metrics its cluster models read: mem"):
        entity_series(data, METRICS)
