"""A fitted model carries the check of its own threshold."""

from omnistream.offline.datasets import load_asd, metric_names
from omnistream.offline.fit import fit_entity, model_info


def test_the_model_file_says_how_often_its_threshold_fired_on_held_out_history():
    series = load_asd(["omi-1"])[0]
    fitted = fit_entity("zscore", series.train)
    info = model_info(fitted, metric_names(series.train.shape[1]), entity="omi-1")
    # POT at q = 1e-2 on the first half of the calibration split, SPOT over the second: about 1 %
    assert 0.0 <= info.training["held_out_alarms"] < 0.05
    assert info.training["threshold_rule"].startswith("POT, risk 0.01")
