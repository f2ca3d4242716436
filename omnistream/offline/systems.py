"""Labelled systems: many entities scored together over their call graph, with the faults that
were injected into them (for detection and root-cause figures).

A system dataset is ``nezha`` (Nezha Online Boutique, two folds, below), the user's folder:
the entity folders of ``datasets.load_folder`` (one per service, the same metrics in each) plus
``topology.csv`` (a CSV edge list, ``topology.graph``) and, optionally, ``faults.csv`` with the
columns ``start,end,entity,kind`` (test rows, end exclusive; the entity is the root cause), or
an entity dataset without a call graph (asd, smd, a folder without ``topology.csv``): its
entities as the nodes of one system, whose system detectors then have only the graph they
learn. Without ``faults.csv``, every maximal run of rows where one entity alone is labelled is
taken as a fault of that entity. The system's label of a test row is 1 when any entity's is.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnistream.offline.datasets import (NEZHA_TEST_DAY, NEZHA_TRAIN_DAY, DataError, EntitySeries, load_dataset,
                                         load_folder, metric_names, nezha_files, nezha_metrics)
from omnistream.stream.records import Topology
from omnistream.topology.graph import read_edge_list

NEZHA_DAYS = (NEZHA_TRAIN_DAY, NEZHA_TEST_DAY)
NEZHA_METRICS = ["CpuUsage", "CpuUsageRate", "MemoryUsage", "MemoryUsageRate", "SyscallRead", "SyscallWrite",
                 "NetworkReceiveBytes", "NetworkTransmitBytes", "PodClientLatencyP90", "PodClientLatencyP95",
                 "PodClientLatencyP99", "PodServerLatencyP90", "PodServerLatencyP95", "PodServerLatencyP99",
                 "PodWorkload", "PodSuccessRate", "NodeCpuUsageRate", "NodeMemoryUsageRate", "NodeNetworkReceiveBytes"]


@dataclass(frozen=True)
class Fault:
    """An injected fault: its rows in the test split [start, end), its root-cause entity, its kind."""

    start: int
    end: int
    entity: str
    kind: str


@dataclass(frozen=True)
class SystemSeries:
    """One system's history: train (T1, N, M) and test (T2, N, M) over ``nodes`` (entities) and
    ``metrics`` (the same in every node), system labels (T2,), node labels (T2, N), its topology
    and its faults."""

    system: str
    nodes: list[str]
    metrics: list[str]
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    node_labels: np.ndarray
    topology: Topology
    faults: list[Fault]
    step_seconds: float = 60.0

    def entities(self) -> list[EntitySeries]:
        """Each node as an entity of its own (what per-entity detectors see), with its own labels."""
        return [EntitySeries(node, self.train[:, i], self.test[:, i], self.node_labels[:, i].astype(np.int8),
                             self.metrics, self.step_seconds) for i, node in enumerate(self.nodes)]

    def flat(self) -> EntitySeries:
        """The system as one entity of N x M metrics (node-major: node i's metrics are columns
        i*M .. i*M+M-1), labelled by the system labels: what a system detector trains on."""
        n, m = len(self.nodes), len(self.metrics)
        names = [f"{node}/{metric}" for node in self.nodes for metric in self.metrics]
        return EntitySeries(self.system, self.train.reshape(len(self.train), n * m),
                            self.test.reshape(len(self.test), n * m), self.labels.astype(np.int8), names,
                            self.step_seconds)


def load_nezha_system(fold: int = 0) -> SystemSeries:
    """Nezha Online Boutique as one system of its 10 instrumented services. Fold 0 trains on the
    first day and tests on the second (32 faults), fold 1 the other way round (24 faults); each
    training day holds faults too, as production history does, and no label chooses anything."""
    if fold not in (0, 1):
        raise ValueError(f"nezha has folds 0 and 1, not {fold}")
    train_day, test_day = NEZHA_DAYS if fold == 0 else NEZHA_DAYS[::-1]
    root, files = nezha_files()
    nodes = sorted(service for day, service in files if day == test_day)
    train = np.stack([nezha_metrics(files[(train_day, s)]) for s in nodes], axis=1)
    test = np.stack([nezha_metrics(files[(test_day, s)]) for s in nodes], axis=1)
    node_labels = np.zeros((len(test), len(nodes)), dtype=np.int8)
    row_of_time: dict[tuple[str, str], int] = {}  # (service, its row's time) -> row
    with open(root / "derived" / f"labels_{test_day}.csv") as f:
        for r in csv.DictReader(f):
            node_labels[int(r["row"]), nodes.index(r["service"])] = int(r["label"])
            row_of_time[r["service"], r["time_utc"]] = int(r["row"])
    faults = []
    with open(root / "derived" / "fault_events.csv") as f:
        for event in csv.DictReader(f):
            if event["day"] == test_day:
                first = row_of_time[event["service"], event["first_labelled_row_utc"]]
                faults.append(Fault(first, first + int(event["n_labelled_rows"]), event["service"],
                                    event["fault_type"]))
    topology = read_edge_list(root / "rca_data" / test_day / "metric" / "dependency.csv", "online-boutique",
                              version=test_day, valid_from=0.0)
    return SystemSeries("online-boutique", nodes, list(NEZHA_METRICS), train, test,
                        node_labels.max(axis=1), node_labels, topology, faults)


def load_system_folder(root: Path) -> SystemSeries:
    """The user's labelled system (see the module's docstring)."""
    root = Path(root)
    if not (root / "topology.csv").exists():
        raise DataError(f"{root}: a system folder needs topology.csv (a CSV edge list) beside its entity folders")
    entities = load_folder(root)
    metrics = entities[0].train.shape[1]
    if any(e.train.shape[1] != metrics for e in entities):
        raise DataError(f"{root}: every entity of a system must have the same metrics")
    lengths = {(len(e.train), len(e.test)) for e in entities}
    if len(lengths) > 1:
        raise DataError(f"{root}: every entity of a system must have as many train and test rows as the others")
    nodes = [e.entity for e in entities]
    node_labels = np.stack([e.labels for e in entities], axis=1)
    topology = read_edge_list(root / "topology.csv", root.name, version="file", valid_from=0.0)
    faults = _read_faults(root / "faults.csv", nodes, len(node_labels)) if (root / "faults.csv").exists() \
        else _faults_from_labels(node_labels, nodes)
    return SystemSeries(root.name, nodes, entities[0].names or metric_names(metrics),
                        np.stack([e.train for e in entities], axis=1), np.stack([e.test for e in entities], axis=1),
                        node_labels.max(axis=1), node_labels, topology, faults)


def load_fleet_system(name: str) -> SystemSeries:
    """An entity dataset (``datasets.load_dataset``) as one system of its entities, without a
    call graph. Such datasets carry no timestamps, so entities are aligned by position at the
    boundary of their splits: the newest train rows and the oldest test rows that all have (an
    assumption to state with any figure: the same position is taken as the same time)."""
    entities = load_dataset(name)
    widths = {e.train.shape[1] for e in entities}
    if len(widths) > 1:
        raise DataError(f"{name}: its entities have {sorted(widths)} metrics; one system needs the same in each")
    train_rows, test_rows = min(len(e.train) for e in entities), min(len(e.test) for e in entities)
    nodes = [e.entity for e in entities]
    node_labels = np.stack([e.labels[:test_rows] for e in entities], axis=1)
    system = Path(name).name or name
    return SystemSeries(system, nodes, entities[0].names or metric_names(widths.pop()),
                        np.stack([e.train[len(e.train) - train_rows:] for e in entities], axis=1),
                        np.stack([e.test[:test_rows] for e in entities], axis=1), node_labels.max(axis=1),
                        node_labels, Topology(system=system, version="none", valid_from=0.0, ts=0.0, nodes=nodes),
                        _faults_from_labels(node_labels, nodes), entities[0].step_seconds or 60.0)


def load_system_dataset(name: str) -> list[SystemSeries]:
    """The folds of a system dataset: ``nezha`` (two), the user's system folder (one), or an
    entity dataset as one system without a call graph (one)."""
    if name == "nezha":
        return [load_nezha_system(fold) for fold in (0, 1)]
    if Path(name).is_dir() and (Path(name) / "topology.csv").exists():
        return [load_system_folder(Path(name))]
    try:
        return [load_fleet_system(name)]
    except DataError:
        raise
    except ValueError as exc:
        raise ValueError(f"{exc}; a system dataset is nezha, a system folder (entity folders and topology.csv) or "
                         "an entity dataset (its entities one system, no call graph)") from None


def _read_faults(path: Path, nodes: list[str], rows: int) -> list[Fault]:
    out = []
    with open(path, newline="") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            try:
                fault = Fault(int(r["start"]), int(r["end"]), r["entity"].strip(), (r.get("kind") or "").strip())
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: line {line} is not start,end,entity,kind") from None
            if fault.entity not in nodes or not 0 <= fault.start < fault.end <= rows:
                raise DataError(f"{path}: line {line}: entity must be one of the system's and 0 <= start < end "
                                f"<= {rows}")
            out.append(fault)
    return out


def _faults_from_labels(node_labels: np.ndarray, nodes: list[str]) -> list[Fault]:
    """Maximal runs of rows where exactly one entity is labelled: a fault of that entity."""
    out = []
    for i, node in enumerate(nodes):
        alone = (node_labels[:, i] == 1) & (node_labels.sum(axis=1) == 1)
        edges = np.flatnonzero(np.diff(np.r_[0, alone.astype(np.int8), 0]))
        out += [Fault(int(a), int(b), node, "") for a, b in zip(edges[::2], edges[1::2])]
    return sorted(out, key=lambda f: f.start)
