import numpy as np

from omnistream.detectors.calibration import fit_pot
from omnistream.detectors.export import ModelInfo
from omnistream.stream.config import DecideSettings
from omnistream.stream.decide import Decider, top_contributions
from omnistream.stream.scorer import WindowScores

INFO = ModelInfo(name="dcvae", version="v1", metrics=["cpu", "mem"], window=4, threshold=1.0)


def run(scores, settings=DecideSettings(open_after=1, resolve_after=2, ongoing_every=2)):
    decider, state, events = Decider(settings), {}, []
    for t, s in enumerate(scores):
        per_metric = np.array([[s, 0.1]])
        event, _ = decider.decide("e1", state, WindowScores(np.array([s]), per_metric), np.array([float(t)]),
                                  (t - 3.0, float(t)), INFO)
        if event:
            events.append(event)
    return events


def test_incident_lifecycle():
    events = run([0.1, 2.0, 3.0, 2.5, 0.2, 0.1, 0.3, 5.0])
    assert [e.state for e in events] == ["open", "ongoing", "resolved", "open"]
    assert events[0].ts == 1.0 and events[2].ts == 5.0
    assert events[0].top_metrics[0].metric == "cpu"


def test_an_incident_opens_after_open_after_anomalous_points_in_a_row_dated_from_the_first():
    settings = DecideSettings(open_after=2, resolve_after=2, ongoing_every=100)
    events = run([2.0, 0.1, 3.0, 0.2, 0.1, 2.0, 2.5, 0.1, 0.1], settings)  # lone flags at 0 and 2 alert nobody
    assert [(e.state, e.ts) for e in events] == [("open", 6.0), ("resolved", 8.0)]
    assert events[0].event_id == run([2.0, 0.1, 3.0, 0.2, 0.1, 2.0, 2.5, 0.1, 0.1], settings)[0].event_id
    decider, state = Decider(settings), {}  # the pending run lives in the entity's state
    decider.decide("e1", state, WindowScores(np.array([2.0]), np.array([[2.0, 0.1]])), np.array([5.0]),
                   (2.0, 5.0), INFO)
    assert state["pending"] == {"since": 5.0, "anomalous": 1}
    event, _ = Decider(settings).decide("e1", dict(state), WindowScores(np.array([2.0]), np.array([[2.0, 0.1]])),
                                        np.array([6.0]), (3.0, 6.0), INFO)
    assert event.state == "open" and event.event_id == events[0].event_id


def test_event_ids_are_deterministic_and_distinct():
    a, b = run([0.1, 2.0, 3.0, 0.0, 0.0]), run([0.1, 2.0, 3.0, 0.0, 0.0])
    assert [e.event_id for e in a] == [e.event_id for e in b]
    assert len({e.event_id for e in a}) == len(a)


def test_top_contributions_share_of_energy():
    got = top_contributions(np.array([1.0, 3.0, 0.0]), ["a", "b", "c"], 2)
    assert [c.metric for c in got] == ["b", "a"] and abs(got[0].contribution - 0.9) < 1e-9


def test_spot_threshold_follows_the_scores_and_survives_in_state():
    rng = np.random.default_rng(0)
    pot = fit_pot(rng.exponential(1.0, 5000), q=1e-3)
    info = ModelInfo(name="usad", version="v2", metrics=["cpu", "mem"], window=4, threshold=pot.threshold,
                     calibration=pot.to_dict())
    decider, state = Decider(DecideSettings()), {}
    records = []
    for t, s in enumerate(rng.exponential(3.0, 400)):  # the entity's normal level rose threefold
        _, record = decider.decide("e1", state, WindowScores(np.array([s]), np.array([[s, 0.0]])),
                                   np.array([float(t)]), (t - 3.0, float(t)), info)
        records.append(record)
    assert records[-1].threshold > 1.05 * records[0].threshold  # SPOT raised the threshold
    assert "threshold" not in state  # the adapted threshold reaches the state at the end of the batch
    decider.end_batch()
    assert state["threshold"]["model"] == "usad:v2" and state["threshold"]["k"] > pot.k
    first = records[0]
    assert np.isclose(first.calibrated_score, (first.score - pot.center) / (pot.threshold - pot.center))
    fixed = Decider(DecideSettings(adapt_threshold=False))
    _, record = fixed.decide("e1", {}, WindowScores(np.array([1.0]), np.array([[1.0, 0.0]])), np.array([0.0]),
                             (0.0, 0.0), info)
    assert record.threshold == pot.threshold


def test_a_system_incident_ranks_its_entities_by_their_own_calibrated_scores():
    from omnistream.stream.decide import related_entities

    info = ModelInfo(name="topomad", version="v1", metrics=["api/cpu", "api/lat", "db/cpu", "db/lat"], window=4,
                     threshold=1.0, input_kind="system", reduction="mean", nodes=["api", "db"],
                     node_calibration=[{"center": 0.0, "threshold": 10.0}, {"center": 1.0, "threshold": 2.0}])
    per_metric = np.array([6.0, 4.0, 1.0, 3.0])  # api raw 5 (calibrated 0.5), db raw 2 (calibrated 1.0)
    ranked = related_entities(per_metric, info, 1, 10)
    assert [(r.entity, r.calibrated_score) for r in ranked] == [("db", 1.0), ("api", 0.5)]
    assert [(m.metric, m.contribution) for m in ranked[0].top_metrics] == [("lat", 0.9)]  # its own names, 9 / 10
    assert [r.entity for r in related_entities(per_metric, info, 1, 1)] == ["db"]  # the most anomalous only
    decider, state = Decider(DecideSettings(open_after=1)), {}
    event, _ = decider.decide("shop", state, WindowScores(np.array([5.0]), per_metric[None]), np.array([1.0]),
                              (0.0, 1.0), info)
    assert event.state == "open" and event.system == "shop" and event.related_entities[0].entity == "db"
