"""Incident figures at the deployed threshold: what an operator reads."""

import numpy as np

from omnistream.offline.incidents import IncidentCounts, incident_counts, incident_spans


def test_incidents_open_on_a_flag_and_close_after_three_normal_points():
    flags = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 0], bool)
    assert incident_spans(flags, open_after=1) == [(1, 1, 8), (8, 8, 10)]  # the last one still open at the end


def test_with_open_after_two_flags_in_a_row_send_the_alert_dated_from_the_first():
    flags = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 1, 1], bool)
    got = incident_spans(flags, open_after=2)
    assert got == [(1, 2, 8), (12, 13, 15)]  # the lone flags at 8 and 10 open nothing
    assert incident_spans(flags, open_after=3) == [(12, 14, 15)]
    labels = np.zeros(15, np.int8)
    labels[8:10] = 1  # only a lone flag falls in it: missed
    labels[11:15] = 1  # found: its alert at 13 is 2 points after its start
    counts = incident_counts(flags, labels, open_after=2)
    assert (counts.incidents, counts.true_incidents, counts.found, counts.delays) == (2, 1, 1, [2])


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
    got = incident_counts(flags, labels, step_seconds=60.0, k=5, open_after=1)
    assert (got.incidents, got.true_incidents, got.segments, got.found, got.delays) == (4, 3, 3, 1, [2])
    figures = got.as_dict()
    assert figures["incident_precision"] == 0.75 and figures["segment_recall"] == 1 / 3
    assert figures["per_entity_day"] == 4 / (100 * 60 / 86400) and figures["median_delay"] == 2.0
    pooled = got + incident_counts(np.zeros(100, bool), labels, step_seconds=60.0, open_after=1)
    assert pooled.as_dict()["segment_recall"] == 1 / 6 and pooled.incidents == 4
    assert (got + incident_counts(flags, labels, open_after=1)).as_dict()["per_entity_day"] is None  # a step unknown
    assert IncidentCounts().as_dict()["incident_precision"] is None
