"""The fault-injection suite's yardstick: a fleet of entities on real models, one system of them
all (its topology published, no system model: its incidents come from the entities' scores),
the outputs the processors give in-process for its records, and a score-by-score comparison of
what the worker published through the broker with them."""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from streams import consume

from omnistream.offline.datasets import metric_names
from omnistream.stream.config import Settings
from omnistream.stream.fleet import fleet_scores
from omnistream.stream.points import Point, unpack_points
from omnistream.stream.records import Topology
from omnistream.stream.systems import SystemBatch, SystemProcessor
from omnistream.stream.topics import POINTS
from omnistream.stream.processor import Processor
from omnistream.stream.scorer import ModelStore
from omnistream.topology.graph import publish
from omnistream.topology.registry import TopologyRegistry

START_TS = 1_700_000_000.0
ENTITIES = [f"svc-{i:02d}" for i in range(8)]  # over the 8 partitions, so that two workers share them
RTOL = 1e-4  # batches of other sizes change float32 sums in the last digits, far below any decision
SYSTEM = Topology(system="fleet", version="1", valid_from=0, ts=0, nodes=ENTITIES,
                  edges=[(a, b, 1.0) for a, b in zip(ENTITIES, ENTITIES[1:])])


def publish_system(bootstrap: str, prefix: str) -> None:
    """The fleet's topology on the topology topic, before any worker starts."""
    publish(SYSTEM, {"bootstrap.servers": bootstrap}, f"{prefix}topology")


def fleet_models(trained_models, folder: Path) -> Path:
    """Copies of the two ASD models, one per fleet entity (a file name routes to its entity)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(Path(trained_models[0]).glob("*.pt"))
    for i, entity in enumerate(ENTITIES):
        shutil.copy(sources[i % len(sources)], folder / f"{entity}.pt")
    return folder


def fleet_records(asd_series, start: int, stop: int) -> list[dict]:
    """Points ``start``..``stop`` of every fleet entity, time-ordered; entity i reads the test
    series of ASD model i % 2 from offset 37 i, so that no two entities see the same data."""
    series = [asd_series[name].test for name in sorted(asd_series)]
    names = metric_names(series[0].shape[1])
    out = []
    for t in range(start, stop):
        for i, entity in enumerate(ENTITIES):
            values = series[i % len(series)][37 * i + t]
            out.append({"entity": entity, "ts": START_TS + 60 * t, "metrics": dict(zip(names, values.tolist()))})
    return out


@dataclass
class Expected:
    anomalies: dict[str, dict]  # event_id -> event
    scores: dict[tuple[str, float], dict]  # (entity, ts) -> score record


def reference(model_dir: Path, records: list[dict]) -> Expected:
    """What the processor publishes for ``records`` in one process, with no fault."""
    store = ModelStore(model_dir)
    store.refresh()
    settings = Settings.model_validate({"decide": {"publish_scores": True}})
    points = [Point(r["entity"], r["ts"], r["metrics"], "", 0) for r in records]
    outcome = Processor(settings, store).process(points)
    for event in outcome.anomalies:
        event.system = SYSTEM.system
    systems = ModelStore(model_dir, kind="system")
    systems.refresh()
    registry = TopologyRegistry()
    registry.apply(SYSTEM)
    scores = sorted(outcome.scores, key=lambda s: (s.ts, s.entity))
    system = SystemProcessor(settings, systems, registry).process([SystemBatch(SYSTEM.system, 0, [],
                                                                               fleet_scores(scores))])
    assert system.anomalies, "the fleet's system should have incidents of its own"
    return Expected({e.event_id: e.model_dump(mode="json") for e in outcome.anomalies + system.anomalies},
                    {(s.entity, s.ts): s.model_dump(mode="json") for s in outcome.scores + system.scores})


@dataclass
class Tally:
    sent: int  # expected by the reference
    received: int
    missing: int
    extra: int
    duplicated: int
    changed: int
    first_changes: list[str]  # what differs in the first few changed messages, for the report
    missing_spans: dict[str, str]  # entity -> "first..last ts (count)" of what is missing


def _differences(a: dict, b: dict, path: str = "") -> list[str]:
    """The fields of ``b`` that differ from ``a`` beyond RTOL, as 'field: a != b'."""
    out = []
    for key in sorted(a.keys() | b.keys()):
        x, y, where = a.get(key), b.get(key), f"{path}{key}"
        if isinstance(x, dict) and isinstance(y, dict):
            out.extend(_differences(x, y, where + "."))
        elif not _same({key: x}, {key: y}):
            out.append(f"{where}: {x!r} != {y!r}")
    return out


def _same(a: dict, b: dict) -> bool:
    for key in a.keys() | b.keys():
        x, y = a.get(key), b.get(key)
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=RTOL, abs_tol=1e-6):
                return False
        elif isinstance(x, dict) and isinstance(y, dict):
            if not _same(x, y):
                return False
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y) or not all(_same(u, v) if isinstance(u, dict) else u == v for u, v in zip(x, y)):
                return False
        elif x != y:
            return False
    return True


def tally(expected: dict, messages: list, key_of) -> Tally:
    got = [orjson.loads(m.value()) for m in messages]
    counts = Counter(key_of(g) for g in got)
    seen = {key_of(g): g for g in got}
    changed = [k for k, v in seen.items() if k in expected and not _same(expected[k], v)]
    return Tally(len(expected), len(got), len(expected.keys() - seen.keys()), len(seen.keys() - expected.keys()),
                 sum(c - 1 for c in counts.values()), len(changed),
                 [f"{k}: {'; '.join(_differences(expected[k], seen[k]))}" for k in changed[:3]],
                 _spans(expected.keys() - seen.keys()))


def _span(ts: list[float] | set[float]) -> str:
    return f"{min(ts):.0f}..{max(ts):.0f} ({len(ts)})"


def _spans(missing: set) -> dict[str, str]:
    """Per entity, the span of the missing scores' ts, or of the missing events (counted at 0)."""
    by_entity: dict[str, list[float]] = {}
    for key in missing:
        entity, ts = key if isinstance(key, tuple) else (key, 0.0)
        by_entity.setdefault(entity, []).append(ts)
    return {e: _span(t) for e, t in sorted(by_entity.items())}


def points_on_topic(bootstrap: str, prefix: str) -> dict[str, str]:
    """Per entity, the span and count of distinct points on the internal points topic: where a
    lost score's point stopped (before or after ingest)."""
    seen: dict[str, set[float]] = {}
    for msg in read_all(bootstrap, f"{prefix}{POINTS}"):
        for point in unpack_points([(msg.value(), msg.partition(), msg.offset())])[0]:
            seen.setdefault(point.entity, set()).add(point.ts)
    return {e: _span(t) for e, t in sorted(seen.items())}


def event_key(event: dict) -> str:
    return event["event_id"]


def score_key(score: dict) -> tuple[str, float]:
    return score["entity"], score["ts"]


def collect(bootstrap: str, prefix: str, expected: Expected, timeout: float = 240.0,
            settle: float = 3.0) -> tuple[Tally, Tally]:
    """Read ``anomalies`` and ``scores`` until every expected message came (then ``settle``
    seconds more, to catch repeats and extras) and compare them with the reference."""
    def complete(keys, key_of):
        def until(messages):
            return keys <= {key_of(orjson.loads(m.value())) for m in messages}
        return until

    consume(bootstrap, f"{prefix}scores", complete(expected.scores.keys(), score_key), timeout)
    consume(bootstrap, f"{prefix}anomalies", complete(expected.anomalies.keys(), event_key), 60)
    time.sleep(settle)
    return (tally(expected.anomalies, read_all(bootstrap, f"{prefix}anomalies"), event_key),
            tally(expected.scores, read_all(bootstrap, f"{prefix}scores"), score_key))


def read_all(bootstrap: str, topic: str) -> list:
    """Every message of ``topic`` up to its partitions' high watermarks now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{time.time_ns()}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        messages, done = [], {p for p, end in ends.items() if end == 0}
        deadline = time.time() + 60
        while len(done) < len(ends) and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            messages.append(msg)
            if msg.offset() >= ends[msg.partition()] - 1:
                done.add(msg.partition())
        return messages
    finally:
        consumer.close()


def report(fault: str, events: Tally, scores: Tally, bootstrap: str = "", prefix: str = "",
           **figures: float) -> None:
    """One line per fault for the record (pytest -s shows it)."""
    if scores.missing and bootstrap:
        print(f"\nmissing scores' points on the points topic: {points_on_topic(bootstrap, prefix)}")
    print(f"\nFAULT {fault}: events {asdict(events)} scores {asdict(scores)} "
          + " ".join(f"{k}={v:.1f}" for k, v in figures.items()))


def assert_exact(events: Tally, scores: Tally) -> None:
    for name, t in (("anomalies", events), ("scores", scores)):
        assert (t.missing, t.extra, t.changed) == (0, 0, 0), f"{name}: {t}"
