"""The worker's system path: the points of a system's entities (forwarded by the score agent on
the internal system-points topic, keyed by system, so that one worker holds each system; an
entity's points go to every system whose model reads it) become
system rows (topology.align), system windows that the system's model ``<system>.pt`` scores
(detectors.graphs), and system incidents whose events name the system and rank its entities
(stream.decide). The system's window, incident, threshold and aligner state are one changelogged
snapshot, like an entity's. When the system's topology changes, the model's call-graph buffer
follows it (its nodes stay those it was trained on; entities new to the topology need a refit).
A system with a topology and no system model gets its entities' calibrated scores instead, and
its incidents from them (stream.fleet)."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson
import torch

from omnistream.detectors.graphs import normalised_adjacency
from omnistream.stream import telemetry
from omnistream.stream.config import Settings
from omnistream.stream.fleet import FleetIncidents, FleetScore
from omnistream.stream.points import POINTS_PER_MESSAGE, Point
from omnistream.stream.processor import Outcome, Processor
from omnistream.stream.records import Topology
from omnistream.stream.scorer import LoadedModel, ModelStore
from omnistream.topology.align import SystemAligner
from omnistream.topology.graph import adjacency
from omnistream.topology.registry import TopologyRegistry

log = logging.getLogger(__name__)


@dataclass
class SystemBatch:
    """One system-points message: entity points for a system model, or calibrated entity scores
    for a system without one."""

    system: str
    partition: int
    points: list[tuple[str, float, dict]] = field(default_factory=list)  # (entity, ts, metrics)
    scores: list[FleetScore] = field(default_factory=list)


def pack_system_points(system: str, points: list[tuple[str, float, dict]]) -> Iterator[bytes]:
    """Messages carrying ``points`` ((entity, ts, metrics), in order) of one system."""
    for i in range(0, len(points), POINTS_PER_MESSAGE):
        yield orjson.dumps({"system": system, "points": points[i:i + POINTS_PER_MESSAGE]})


def pack_fleet_scores(system: str, scores: list[FleetScore]) -> Iterator[bytes]:
    """Messages carrying calibrated entity ``scores`` (stream.fleet), in order, of one system."""
    for i in range(0, len(scores), POINTS_PER_MESSAGE):
        yield orjson.dumps({"system": system, "scores": scores[i:i + POINTS_PER_MESSAGE]})


def unpack_system_points(values: Iterable[tuple[bytes, int]]) -> list[SystemBatch]:
    out = []
    for value, partition in values:
        data = orjson.loads(value)
        out.append(SystemBatch(data["system"], partition, [(e, ts, m) for e, ts, m in data.get("points", ())],
                               [(e, ts, c, [tuple(x) for x in top]) for e, ts, c, top in data.get("scores", ())]))
    return out


class SystemProcessor:
    """System points in, the outcome of scoring and deciding their released rows out."""

    def __init__(self, settings: Settings, models: ModelStore, registry: TopologyRegistry,
                 restore: Callable[[str], bytes | None] = lambda system: None, clock: Callable[[], float] = time.time):
        self.settings, self.models, self.registry, self.clock = settings, models, registry, clock
        self.inner = Processor(settings, models, restore, request_transfers=False)
        self.fleet = FleetIncidents(self.inner.decider, settings.systems)
        self._graphs: dict[str, tuple[int, str]] = {}  # system -> (topology object id, model sha) applied
        self._lock = threading.Lock()

    def members(self) -> dict[str, list[str]]:
        """Entity -> the systems whose model reads it: where the score agent forwards its points."""
        out: dict[str, list[str]] = defaultdict(list)
        for system, model in list(self.models.models.items()):
            for node in model.info.nodes:
                out[node].append(system)
        return dict(out)

    def fleets_of(self, entity: str) -> list[str]:
        """The systems with ``entity`` in their topology and no system model: where the score
        agent forwards its calibrated scores."""
        return [system for system in self.registry.systems_of(entity) if self.models.get(system) is None]

    def forget(self, partitions: set[int]) -> int:
        with self._lock:
            return self.inner.forget(partitions)

    def process(self, batches: list[SystemBatch]) -> Outcome:
        with self._lock:
            now = self.clock()
            rows: list[Point] = []
            touched: dict[str, int] = {}
            grouped: dict[str, list[SystemBatch]] = defaultdict(list)
            fleet = Outcome()
            for batch in batches:
                grouped[batch.system].append(batch)
            for system, parts in grouped.items():
                model, partition = self.models.get(system), parts[-1].partition
                topology = self.registry.get(system) if model is None else None
                if model is None and topology is not None:
                    self._fleet(system, topology, partition, [s for p in parts for s in p.scores], now, fleet)
                    touched[system] = partition
                    continue
                if model is None:
                    telemetry.SYSTEMS_UNSCORED.inc(sum(len(p.points) + len(p.scores) for p in parts))
                    continue
                self._follow_graph(system, model)
                window = self.inner._window(system, Point(system, 0.0, {}, "systems", partition), model)
                aligner = self._aligner(window.state.get("aligner"), model)
                dropped = aligner.dropped
                for part in parts:
                    for entity, ts, metrics in part.points:
                        aligner.add(entity, ts, metrics, now)
                names = model.info.metrics
                rows += [Point(system, row.ts, dict(zip(names, row.values.ravel().tolist())), "systems", partition)
                         for row in aligner.release(now)]
                telemetry.SYSTEM_POINTS_DROPPED.inc(aligner.dropped - dropped)
                window.state["aligner"] = aligner.to_dict()
                touched[system] = partition
            out = self.inner.process(rows)
            out.anomalies += fleet.anomalies
            out.scores += fleet.scores
            out.scored += fleet.scored
            for system, partition in touched.items():  # the aligner's state, also where no row came out
                out.snapshots.setdefault(system, (partition, self.inner.windows[system].snapshot()))
            return out

    def _fleet(self, system: str, topology: Topology, partition: int, scores: list[FleetScore], now: float,
               out: Outcome) -> None:
        """A system without a model: its incidents from its entities' calibrated scores."""
        window = self.inner._window(system, Point(system, 0.0, {}, "systems", partition), None)
        self.inner.partition_of[system] = partition
        events, records, dropped = self.fleet.process(system, topology, window.state, scores, now)
        out.anomalies += events
        out.scores += records
        out.scored += len(records)
        telemetry.SYSTEM_POINTS_DROPPED.inc(dropped)

    def _aligner(self, held: dict | None, model: LoadedModel) -> SystemAligner:
        info, s = model.info, self.settings.systems
        if held and held["nodes"] == info.nodes:
            return SystemAligner.from_dict(held)
        width = len(info.metrics) // len(info.nodes)
        return SystemAligner(list(info.nodes), [m.split("/", 1)[-1] for m in info.metrics[:width]], s.step_seconds,
                             s.tolerance_seconds or s.step_seconds / 2, s.wait_rows, s.fill_rows, s.stop_after)

    def _follow_graph(self, system: str, model: LoadedModel) -> None:
        """Write the system's latest topology into the model's call-graph buffer, once per change."""
        topology = self.registry.get(system)
        if topology is None or self._graphs.get(system) == (id(topology), model.sha256) \
                or not model.info.config.get("use_graph", True):  # a model trained without the call graph
            return
        self._graphs[system] = (id(topology), model.sha256)
        graph = getattr(getattr(model.module, "net", None), "links", None)
        nodes = list(model.info.nodes)
        if not isinstance(graph, torch.Tensor) or graph.shape != (len(nodes), len(nodes)):
            log.warning("system model of %s has no call-graph buffer to follow its topology", system)
            return
        calls = adjacency(topology, nodes)
        with torch.no_grad():
            graph.copy_(torch.from_numpy(normalised_adjacency(calls)).to(graph.device))
        new = sorted(set(topology.nodes) - set(nodes))
        absent = sorted(set(nodes) - set(topology.nodes))
        log.info("system %s follows topology version %s: %d calls among its %d entities%s%s", system,
                 topology.version, int(np.count_nonzero(calls)), len(nodes),
                 f"; not in the model (a refit would score them): {', '.join(new[:5])}" if new else "",
                 f"; gone from the topology (no calls, still scored): {', '.join(absent[:5])}" if absent else "")
