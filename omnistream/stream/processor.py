"""The heart of the worker, free of Kafka: a batch of validated points in, the messages to
publish and the state to persist out.

Every point whose window is full is scored as the last point of its own window (every
``stride``-th point of an entity), so a point's score, and any event it causes, depends only
on the input and never on how records were batched: replays give the same events and ids.
Windows of all entities in a batch are stacked and scored with one call per model.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from omnistream.detectors.shift import level_offset
from omnistream.stream.config import Settings
from omnistream.stream.decide import Decider
from omnistream.stream.points import Point
from omnistream.stream.records import AnomalyEvent, DataRange, ScoreRecord, TransferRequest, stable_id
from omnistream.stream.scorer import LoadedModel, ModelStore, WindowScores, score_batch
from omnistream.stream.windows import EntityWindow, fill_missing

DEFAULT_WINDOW = 64
STACK_LIMIT = 4096  # windows stacked at once: 4096 x 64 x 38 float32 is about 40 MB
EXPIRE_EVERY = 50  # batches between looks for idle entities


@dataclass
class Outcome:
    anomalies: list[AnomalyEvent] = field(default_factory=list)
    scores: list[ScoreRecord] = field(default_factory=list)
    transfers: list[TransferRequest] = field(default_factory=list)
    snapshots: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    points: int = 0
    late: int = 0
    scored: int = 0
    score_seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # entities whose model failed and was set aside
    dropped: list[tuple[str, int]] = field(default_factory=list)  # (entity, partition): idle, no model, state goes


@dataclass
class _Job:
    entity: str
    window: EntityWindow
    model: LoadedModel
    ts: np.ndarray  # (W,) timestamps of the scored window
    values: np.ndarray  # (W, M)


class Processor:
    """Keeps the entities' windows and turns batches of points into outcomes."""

    def __init__(self, settings: Settings, models: ModelStore,
                 restore: Callable[[str], bytes | None] = lambda entity: None, request_transfers: bool = True):
        """``request_transfers``: ask the transfer service for entities without a model (the
        system processor, whose "entities" are systems, does not)."""
        self.settings = settings
        self.request_transfers = request_transfers
        self.models = models
        self.decider = Decider(settings.decide, settings.shift)
        self.windows: dict[str, EntityWindow] = {}
        self.restore = restore
        self.newest_ts = 0.0  # the newest point seen, the clock of idle expiry (data time: replays agree)
        self.partition_of: dict[str, int] = {}  # entity -> the partition its state is persisted under
        self._lock = threading.Lock()  # a batch and a rebalance's forget() never interleave
        self.batches = 0

    def _window(self, entity: str, first: Point, model: LoadedModel | None) -> EntityWindow:
        window = self.windows.get(entity)
        if window is None:
            blob = self.restore(entity)
            if blob is not None:
                window = EntityWindow.restore(blob)
            elif model is not None:
                window = EntityWindow(list(model.info.metrics), model.info.window)
            else:
                window = EntityWindow(sorted(first.metrics), DEFAULT_WINDOW)
        if model is not None and (window.metrics != model.info.metrics or window.size != model.info.window):
            window = window.with_metrics(list(model.info.metrics)) if window.size == model.info.window else \
                EntityWindow(list(model.info.metrics), model.info.window, state=window.state)
        self.windows[entity] = window
        return window

    def forget(self, partitions: set[int]) -> int:
        """Drop the in-memory state of entities on revoked partitions: if a partition comes back,
        its entities are restored from the changelog, which another worker may have moved on."""
        with self._lock:
            gone = [e for e, p in self.partition_of.items() if p in partitions]
            for entity in gone:
                self.windows.pop(entity, None)
                del self.partition_of[entity]
            return len(gone)

    def process(self, points: list[Point]) -> Outcome:
        with self._lock:
            return self._process(points)

    def _process(self, points: list[Point]) -> Outcome:
        out = Outcome(points=len(points))
        by_entity: dict[str, list[Point]] = defaultdict(list)
        for p in points:
            by_entity[p.entity].append(p)
        jobs: list[_Job] = []
        touched: dict[str, int] = {}  # entity -> partition its state is persisted under
        for entity, group in by_entity.items():
            model = self.models.get(entity)
            window = self._window(entity, group[0], model)
            fresh = []
            last = window.last_ts
            for p in group:  # at-least-once delivery: drop what is not newer than what we hold
                if p.ts > last:
                    fresh.append(p)
                    last = p.ts
            out.late += len(group) - len(fresh)
            if not fresh:
                continue
            ts = np.fromiter((p.ts for p in fresh), dtype=np.float64, count=len(fresh))
            values = window.vectorise([p.metrics for p in fresh])
            window.state["source"] = fresh[0].source
            if model is not None:
                jobs.extend(self._jobs(entity, window, model, ts, values))
            elif self.request_transfers and not window.state.get("transfer_requested"):
                out.transfers.append(self._transfer_request(entity, "new_entity", fresh[0].source, float(ts[0]),
                                                            float(ts[-1])))
                window.state["transfer_requested"] = True
            window.append(ts, values)
            touched[entity] = group[-1].partition
        if jobs:
            self._score(jobs, out)
            self.decider.end_batch()
        # After scoring, so that the snapshots carry the incident state the events reflect.
        out.snapshots = {entity: (partition, self.windows[entity].snapshot()) for entity, partition in touched.items()}
        self.partition_of.update(touched)
        self.newest_ts = max([self.newest_ts] + [p.ts for p in points])
        self.batches += 1
        if self.batches % EXPIRE_EVERY == 0:
            self._expire(out, set(touched))
        return out

    def _expire(self, out: Outcome, touched: set[str]) -> None:
        """Idle entities leave memory (``window.idle_seconds``): one with a model is restored from
        its changelogged snapshot if it speaks again; one without is dropped (``out.dropped``)."""
        idle = self.settings.window.idle_seconds
        if not idle:
            return
        for entity in [e for e, w in self.windows.items() if w.last_ts < self.newest_ts - idle and e not in touched]:
            del self.windows[entity]
            partition = self.partition_of.pop(entity, 0)
            if self.models.get(entity) is None:
                out.dropped.append((entity, partition))

    def _jobs(self, entity: str, window: EntityWindow, model: LoadedModel, ts: np.ndarray,
              values: np.ndarray) -> list[_Job]:
        """One job per new point that completes a window and falls on the stride."""
        size, stride = window.size, self.settings.window.stride
        held_ts, held_values = window.ordered()
        keep = min(len(held_ts), size - 1)
        all_ts = np.concatenate([held_ts[len(held_ts) - keep:], ts])
        all_values = np.concatenate([held_values[len(held_values) - keep:], values])
        first_index = window.count - keep  # global index of all_ts[0]
        jobs = []
        for j in range(keep, len(all_ts)):
            g = first_index + j
            if j >= size - 1 and (g - (size - 1)) % stride == 0:
                jobs.append(_Job(entity, window, model, all_ts[j - size + 1:j + 1], all_values[j - size + 1:j + 1]))
        return jobs

    def _score(self, jobs: list[_Job], out: Outcome) -> None:
        """Score and decide ``jobs``; an entity's jobs after a level shift in the same batch are
        scored again with its new offset, so that batching never changes a score."""
        while jobs:
            results = self._run_models(jobs, out)
            jobs = self._decide([job for job in jobs if id(job) in results], results, out)

    def _run_models(self, jobs: list[_Job], out: Outcome) -> dict[int, WindowScores]:
        groups: dict[str, list[_Job]] = defaultdict(list)
        for job in jobs:
            groups[job.model.sha256].append(job)
        started = time.perf_counter()
        results: dict[int, WindowScores] = {}
        for group in groups.values():
            model = group[0].model
            try:
                for i in range(0, len(group), STACK_LIMIT):  # bounded memory, however large the batch
                    part = group[i:i + STACK_LIMIT]
                    stacked = fill_missing(np.stack([j.values - _offset(j) for j in part]), model.center)
                    for job, scores in zip(part, score_batch(model, stacked, [1] * len(part))):
                        results[id(job)] = scores
            except Exception as exc:  # a model that cannot score must not stop the others
                out.quarantined.extend(self.models.quarantine(model, f"{type(exc).__name__}: {exc}"))
                continue
            out.batch_sizes.append(len(group))
        out.score_seconds += time.perf_counter() - started
        return results

    def _decide(self, jobs: list[_Job], results: dict[int, WindowScores], out: Outcome) -> list[_Job]:
        """Decide jobs in time order per entity; those of an entity after its level shift are
        returned, to be scored again."""
        shifted: set[str] = set()
        again = []
        for job in jobs:
            if job.entity in shifted:
                again.append(job)
                continue
            out.scored += 1
            event, record = self.decider.decide(job.entity, job.window.state, results[id(job)], job.ts[-1:],
                                                (float(job.ts[0]), float(job.ts[-1])), job.model.info)
            out.scores.append(record)
            if event is not None:
                out.anomalies.append(event)
            if event is not None and event.state == "shift":
                shifted.add(job.entity)
                request = self._rebaseline(job)
                if request is not None and self.request_transfers:
                    out.transfers.append(request)
                continue
            request = self._trigger(job, record.calibrated_score >= 1.0) if self.request_transfers else None
            if request is not None:
                out.transfers.append(request)
        return again

    def _rebaseline(self, job: _Job) -> TransferRequest | None:
        """After a level shift: the entity's inputs offset to the model's level (when the model
        says what its level is), and a refit asked for on the data of the shifted block, unless
        one is already asked for this model version (by a shift or the drift trigger)."""
        info, center, state = job.model.info, job.model.center, job.window.state
        version = f"{info.name}:{info.version}"
        if center is not None:
            state["offset"] = {"model": version, "values": level_offset(job.values, center).tolist()}
        if state.get("drift_requested") == version:
            return None
        state["drift_requested"] = version
        ts = float(job.ts[-1])
        return self._transfer_request(job.entity, "drift", state.get("source", ""),
                                      ts - self.settings.shift.persist_seconds, ts)

    def _trigger(self, job: _Job, flagged: bool) -> TransferRequest | None:
        """A drift or schedule request for an entity that has a model (``settings.triggers``):
        drift when the share of flagged points in a block of ``drift_points`` exceeds
        ``drift_share`` (once per model version), schedule every ``schedule_hours`` of data."""
        triggers, state, info = self.settings.triggers, job.window.state, job.model.info
        ts, version = float(job.ts[-1]), f"{info.name}:{info.version}"
        since = state.get("model_since")
        if not since or since[0] != version:
            since = state["model_since"] = [version, ts]
            state["drift_block"] = [ts, 0, 0]
        block = state.setdefault("drift_block", [ts, 0, 0])  # start ts, points, flagged points
        block[1] += 1
        block[2] += int(flagged)
        source = state.get("source", "")
        if block[1] >= triggers.drift_points:
            start, share = block[0], block[2] / block[1]
            state["drift_block"] = [ts, 0, 0]
            if share > triggers.drift_share and triggers.drift_share < 1 and state.get("drift_requested") != version:
                state["drift_requested"] = version
                return self._transfer_request(job.entity, "drift", source, start, ts)
        if triggers.schedule_hours and ts - since[1] >= triggers.schedule_hours * 3600:
            since[1] = ts
            return self._transfer_request(job.entity, "schedule", source, ts - triggers.schedule_hours * 3600, ts)
        return None

    @staticmethod
    def _transfer_request(entity: str, reason: str, topic: str, from_ts: float, to_ts: float) -> TransferRequest:
        return TransferRequest(request_id=stable_id(entity, reason, from_ts), entity=entity, reason=reason,
                               data=DataRange(topic=topic, from_ts=from_ts, to_ts=to_ts), ts=time.time())

    def open_incidents(self) -> int:
        return sum(1 for w in self.windows.values() if w.state.get("incident"))


def _offset(job: _Job) -> np.ndarray | float:
    """What to subtract from the job's values: the entity's offset since its last level shift,
    while it is scored by the model it was found with."""
    held = job.window.state.get("offset")
    info = job.model.info
    if held and held["model"] == f"{info.name}:{info.version}":
        return np.asarray(held["values"], dtype=np.float32)
    return 0.0
