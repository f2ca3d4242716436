"""Incident figures at the deployed threshold: what an operator reads."""

import numpy as np

from omnistream.offline.incidents import IncidentCounts, incident_counts, incident_spans


def test_incidents_open_on_a_flag_and_close_after_three_normal_points():
    flags = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 0], bool)
    assert incident_spans(flags) == [(1, 8), (8, 10)]  # the last one is still open at the end


def test_precision_recall_within_k_and_delay():
    labels = np.zeros(100, np.int8)
    labels[10:20] = 1  # found 2 points in
    labels[40:50] = 1  # an incident opens 8 points in: too late for k = 5
    labels[70:75] = 1  # an incident already open before the segment: no new alert, not found
    flags = np.zeros(100, bool)
    flags[12:15] = True
    flags[48] = True
    flags[60:80] = True
    flags[90] = True  # a false alarm
    got = incident_counts(flags, labels, step_seconds=60.0, k=5)
    assert (got.incidents, got.true_incidents, got.segments, got.found, got.delays) == (4, 3, 3, 1, [2])
    figures = got.as_dict()
    assert figures["incident_precision"] == 0.75 and figures["segment_recall"] == 1 / 3
    assert figures["per_entity_day"] == 4 / (100 * 60 / 86400) and figures["median_delay"] == 2.0
    pooled = got + incident_counts(np.zeros(100, bool), labels, step_seconds=60.0)
    assert pooled.as_dict()["segment_recall"] == 1 / 6 and pooled.incidents == 4
    assert (got + incident_counts(flags, labels)).as_dict()["per_entity_day"] is None  # a step unknown
    assert IncidentCounts().as_dict()["incident_precision"] is None
