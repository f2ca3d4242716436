"""The worker's processing, without Kafka: streaming equals offline scoring, batching and
restarts never change the events."""

import shutil

import numpy as np
import pytest

from omnistream.offline.datasets import metric_names
from omnistream.detectors.base import point_scores
from omnistream.detectors.reduce import reduce_scores
from omnistream.stream.config import Settings
from omnistream.stream import processor as processor_module
from omnistream.stream.points import Point
from omnistream.stream.processor import Processor
from omnistream.detectors.export import sha256_file
from omnistream.stream import telemetry
from omnistream.stream.scorer import Allowlist, ModelStore

N_POINTS = 800  # through labelled anomalies of both servers (omi-2 at 486, omi-1 at 760)


def points_of(series, entity, start=0, stop=N_POINTS, drop_every=0):
    names = metric_names(series.test.shape[1])
    out = []
    for i in range(start, stop):
        metrics = dict(zip(names, series.test[i].tolist()))
        if drop_every and i % drop_every == 0:
            metrics.pop(names[3])
        out.append(Point(entity, 1_700_000_000.0 + 300 * i, metrics, f"metrics.{entity}", 0))
    return out


def interleaved(asd_series, **kw):
    pts = [p for e in asd_series for p in points_of(asd_series[e], e, **kw)]
    return sorted(pts, key=lambda p: (p.ts, p.entity))


def make_processor(folder, restore=lambda e: None, **settings):
    store = ModelStore(folder)
    assert store.refresh()
    return Processor(Settings(**settings), store, restore)


def run_in_batches(processor, points, sizes):
    outcomes, i, k = [], 0, 0
    while i < len(points):
        size = sizes[k % len(sizes)]
        outcomes.append(processor.process(points[i:i + size]))
        i, k = i + size, k + 1
    return outcomes


def events(outcomes):
    """Per entity the order is fixed; across entities it follows batching, so sort."""
    return sorted((e.entity, e.ts, e.state, e.event_id) for o in outcomes for e in o.anomalies)


def scores(outcomes):
    """(entity, ts) -> (score, threshold in force, calibrated score) of every scored point."""
    return {(s.entity, s.ts): (s.score, s.threshold, s.calibrated_score) for o in outcomes for s in o.scores}


def assert_same_scores(a, b):
    """Model calls of other sizes may differ by float rounding only: 1e-5 relative, far below
    any decision's margin (a flipped decision would show in the events compared beside)."""
    assert a.keys() == b.keys()
    np.testing.assert_allclose(np.array(list(a.values())), np.array([b[k] for k in a]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stack_limit", [processor_module.STACK_LIMIT, 37])
def test_streaming_scores_equal_offline_scores(trained_models, asd_series, monkeypatch, stack_limit):
    monkeypatch.setattr(processor_module, "STACK_LIMIT", stack_limit)  # large batches are scored in parts
    folder, detectors = trained_models
    processor = make_processor(folder)
    outcome = processor.process(points_of(asd_series["omi-1"], "omi-1"))
    window = detectors["omi-1"].window
    detector = detectors["omi-1"]
    offline = reduce_scores(point_scores(detector, asd_series["omi-1"].test[:N_POINTS]),
                            detector.reduction)[window - 1:]
    streamed = np.array([s.score for s in outcome.scores])
    assert len(streamed) == N_POINTS - window + 1 == outcome.scored
    np.testing.assert_allclose(streamed, offline, rtol=1e-4, atol=1e-4)


def test_batching_does_not_change_events(trained_models, asd_series):
    folder, _ = trained_models
    pts = interleaved(asd_series)
    whole = [make_processor(folder).process(pts)]
    parts = run_in_batches(make_processor(folder), pts, [1, 7, 50, 3, 200])
    assert events(whole) and events(whole) == events(parts)
    assert_same_scores(scores(whole), scores(parts))


def test_restart_from_snapshots_continues_identically(trained_models, asd_series):
    folder, _ = trained_models
    pts = interleaved(asd_series)
    whole = events([make_processor(folder).process(pts)])
    first = make_processor(folder)
    half = len(pts) // 2
    a = first.process(pts[:half])
    snapshots = {e: blob for e, (_, blob) in a.snapshots.items()}
    second = make_processor(folder, restore=snapshots.get)
    b = second.process(pts[half - 40:])  # redelivered points are dropped as late
    assert b.late == 40
    assert events([a, b]) == whole


def test_missing_metrics_and_unknown_entities(trained_models, asd_series):
    folder, detectors = trained_models
    processor = make_processor(folder, window={"stride": 5})
    # a metric missing from a whole window takes the value the model standardises around
    np.testing.assert_allclose(processor.models.get("omi-1").center, detectors["omi-1"].standardise.center)
    gappy = points_of(asd_series["omi-1"], "omi-1", drop_every=3)
    stranger = [Point("new-box", 1.0 + i, {"cpu": float(i)}, "metrics.new-box", 1) for i in range(3)]
    out = processor.process(gappy + stranger)
    assert all(np.isfinite(s.score) for s in out.scores)
    assert out.scored == len(range(31, N_POINTS, 5))
    assert [t.entity for t in out.transfers] == ["new-box"] and out.transfers[0].data.from_ts == 1.0
    assert not processor.process(stranger[:1] + [Point("new-box", 9.0, {"cpu": 1.0}, "metrics.new-box", 1)]).transfers


@pytest.mark.parametrize("bad_model", [b"not a model", b""])
def test_broken_model_files_are_skipped(tmp_path, bad_model):
    (tmp_path / "broken.pt").write_bytes(bad_model)
    store = ModelStore(tmp_path)
    assert store.refresh() == [] and store.models == {}


def test_store_loads_each_content_once_and_follows_the_folder(trained_models, tmp_path):
    source = trained_models[0]
    for entity in ("web-1", "web-2"):
        shutil.copyfile(source / "omi-1.pt", tmp_path / f"{entity}.pt")
    store = ModelStore(tmp_path)
    assert store.refresh() == ["web-1", "web-2"]
    assert store.get("web-1") is store.get("web-2")  # one module serves both copies
    assert store.refresh() == []  # nothing changed on disk
    shutil.copyfile(source / "omi-2.pt", tmp_path / "web-2.pt")  # replaced: hot reload
    (tmp_path / "web-1.pt").unlink()  # removed: unloaded
    assert sorted(store.refresh()) == ["web-1", "web-2"]
    assert store.get("web-1") is None and store.get("web-2").info.entity == "omi-2"


def test_announced_models_load_only_with_their_sha256(trained_models, tmp_path):
    source = trained_models[0]
    shutil.copyfile(source / "omi-1.pt", tmp_path / "web-1.pt")
    store = ModelStore(tmp_path)
    store.refresh()
    serving = store.get("web-1")
    other = tmp_path / "incoming.bin"
    shutil.copyfile(source / "omi-2.pt", other)
    assert not store.announce("web-1", str(other), "0" * 64)  # sha256 mismatch: refused
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(other.read_bytes()[:1000])
    assert not store.announce("web-1", str(truncated), sha256_file(truncated))  # not loadable: refused
    assert not store.announce("web-1", str(tmp_path / "missing.pt"), "0" * 64)
    assert store.get("web-1") is serving
    assert store.announce("web-1", str(other), sha256_file(other))  # the real one
    assert store.get("web-1").info.entity == "omi-2"
    # From now on the folder's file (a different content) does not replace the announced model.
    (tmp_path / "web-1.pt").write_bytes((source / "omi-1.pt").read_bytes())
    assert store.refresh() == [] and store.get("web-1").info.entity == "omi-2"


def test_drift_and_schedule_requests(trained_models, asd_series):
    folder, _ = trained_models
    processor = make_processor(folder, triggers={"drift_points": 50, "drift_share": 0.2, "schedule_hours": 10})
    calm = processor.process(points_of(asd_series["omi-1"], "omi-1", stop=200))
    assert not [t for t in calm.transfers if t.reason == "drift"]
    # A shifted entity: every metric far off its history, so most points are flagged.
    shifted = [Point(p.entity, p.ts, {k: v + 50.0 for k, v in p.metrics.items()}, p.source, p.partition)
               for p in points_of(asd_series["omi-1"], "omi-1", start=200, stop=400)]
    out = processor.process(shifted)
    drift = [t for t in out.transfers if t.reason == "drift"]
    assert len(drift) == 1 and drift[0].entity == "omi-1" and drift[0].data.topic == "metrics.omi-1"
    assert drift[0].data.from_ts >= shifted[0].ts - 50 * 300  # the block where drift showed
    # schedule: every 10 h of data (120 points at 5 min) since the model started scoring
    schedule = [t for o in (calm, out) for t in o.transfers if t.reason == "schedule"]
    assert len(schedule) == len(range(31 + 120, 400, 120)) and len({t.request_id for t in schedule}) == len(schedule)


def test_a_model_that_fails_is_quarantined_and_the_others_keep_scoring(trained_models, asd_series, tmp_path):
    import torch

    from omnistream.detectors.export import METADATA_NAME, load

    source = trained_models[0]
    shutil.copyfile(source / "omi-1.pt", tmp_path / "good.pt")
    module, info = load(source / "omi-2.pt")
    info.metrics = info.metrics[:-1]  # metadata that does not match the network: every call fails
    torch.jit.save(module, str(tmp_path / "bad.pt"), _extra_files={METADATA_NAME: info.to_json()})
    store = ModelStore(tmp_path)
    assert sorted(store.refresh()) == ["bad", "good"]
    processor = Processor(Settings(), store)
    points = sorted(points_of(asd_series["omi-1"], "good", stop=100) + points_of(asd_series["omi-2"], "bad", stop=100),
                    key=lambda p: (p.ts, p.entity))
    out = processor.process(points)
    assert out.quarantined == ["bad"] and store.get("bad") is None
    assert out.scored == 100 - 31 and {s.entity for s in out.scores} == {"good"}
    assert store.refresh() == [] and store.get("bad") is None  # the same file is not loaded again
    later = processor.process(points_of(asd_series["omi-2"], "bad", start=100, stop=110))
    assert [t.entity for t in later.transfers] == ["bad"]  # it asks for a new model


def test_idle_entities_leave_memory(trained_models, asd_series):
    folder, _ = trained_models
    processor = make_processor(folder, window={"idle_seconds": 3600})
    known = points_of(asd_series["omi-1"], "omi-1", stop=40)
    dropped, sizes = [], []
    for batch in range(200):  # 50k distinct one-off entities, 250 a batch, a minute of data time apart
        ts = 1_700_000_000.0 + 60 * batch
        strangers = [Point(f"host-{batch}-{i}", ts, {"cpu": 1.0}, "metrics", i % 8) for i in range(250)]
        out = processor.process(strangers + ([known[batch]] if batch < len(known) else []))
        dropped += out.dropped
        sizes.append(len(processor.windows))
    assert max(sizes) <= 250 * (60 + processor_module.EXPIRE_EVERY) + 1  # about an hour of entities, not 50k
    assert len(dropped) >= 250 * (200 - 61) and all(isinstance(p, int) for _, p in dropped)
    assert "omi-1" not in {e for e, _ in dropped}  # an entity with a model keeps its changelogged state


def test_a_partition_that_moves_away_and_back_is_scored_from_the_changelog(trained_models, asd_series):
    folder, _ = trained_models
    pts = points_of(asd_series["omi-1"], "omi-1", stop=600)  # all on partition 0
    reference = scores([make_processor(folder).process(pts)])
    table: dict[str, bytes] = {}

    def run(processor, part):
        out = processor.process(part)
        table.update({e: blob for e, (_, blob) in out.snapshots.items()})
        return out

    this, other = make_processor(folder, restore=table.get), make_processor(folder, restore=table.get)
    outs = [run(this, pts[:200])]
    assert this.forget({0}) == 1 and this.forget({1}) == 0  # partition 0 moves to the other worker...
    outs.append(run(other, pts[200:400]))
    other.forget({0})  # ... and back
    outs.append(run(this, pts[400:]))  # without forget(), this would resume from its stale window
    assert_same_scores(scores(outs), reference)
    assert sum(len(o.scores) for o in outs) == len(reference)  # nothing scored twice or missed


def test_only_listed_or_announced_model_files_load(trained_models, tmp_path, caplog):
    source, folder = trained_models[0], tmp_path / "models"
    folder.mkdir()
    for entity, model in (("web-1", "omi-1"), ("web-2", "omi-2")):
        shutil.copyfile(source / f"{model}.pt", folder / f"{entity}.pt")
    listed = tmp_path / "trusted.sha256"
    listed.write_text(f"# reviewed models\n{sha256_file(folder / 'web-1.pt')}  web-1.pt\nnot-a-sum\n")
    refused_before = telemetry.MODELS_REFUSED._value.get()
    store = ModelStore(folder, allowlist=Allowlist(listed))
    assert store.refresh() == ["web-1"]  # web-2's file is in no list and was never announced
    assert store.refused == {"web-2": sha256_file(folder / "web-2.pt")}
    assert telemetry.MODELS_REFUSED._value.get() == refused_before + 1
    assert "neither in the allowlist" in caplog.text and "runs code" in caplog.text
    assert store.refresh() == [] and telemetry.MODELS_REFUSED._value.get() == refused_before + 1  # said once

    # An untrusted replacement of a served file is refused; the trusted model keeps serving.
    serving = store.get("web-1")
    shutil.copyfile(source / "omi-2.pt", folder / "web-1.pt")
    assert store.refresh() == [] and store.get("web-1") is serving

    # Listing the sum (the operator reviewed it) lets it load at the next scan.
    with listed.open("a") as out:
        out.write(f"{sha256_file(folder / 'web-2.pt')}  web-2.pt\n")
    assert sorted(store.refresh()) == ["web-1", "web-2"]
    assert not store.refused

    # A sum taken off the list: the models it let in are unloaded at the next scan.
    listed.write_text("")
    assert sorted(store.refresh()) == ["web-1", "web-2"] and not store.models

    # Announced on the models topic: loads whatever the list says.
    assert store.announce("web-1", str(folder / "web-1.pt"), sha256_file(folder / "web-1.pt"))
    assert "web-1" not in store.refused and store.refresh() == [] and store.get("web-1")

    # A removed file is forgotten; a missing list refuses everything, and says so.
    (folder / "web-2.pt").unlink()
    listed.unlink()
    store.refresh()
    assert "web-2" not in store.refused and "does not exist" in caplog.text
