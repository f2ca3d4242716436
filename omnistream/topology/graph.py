"""A system's call graph: read from a CSV edge list (such as Nezha's dependency.csv), and the
dense adjacency a system model reads.

A CSV edge list has a header naming ``source`` and ``target`` columns (any case; ``caller`` /
``callee`` too) and optionally ``weight``. A row whose target is an IP address is not a call:
it says on which host the source runs (Nezha writes both kinds in one file), and becomes the
source's ``host`` attribute.
"""

from __future__ import annotations

import csv
import ipaddress
import time
from pathlib import Path

import numpy as np

from omnistream.stream.records import Topology


class TopologyFileError(ValueError):
    """An edge-list file that cannot be read; the message names the file, line and problem."""


SOURCE_NAMES, TARGET_NAMES, WEIGHT_NAMES = ("source", "caller", "src"), ("target", "callee", "dst"), ("weight",)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _column(header: list[str], names: tuple[str, ...], path: Path, required: bool) -> int | None:
    lowered = [h.strip().lower() for h in header]
    found = next((lowered.index(n) for n in names if n in lowered), None)
    if found is None and required:
        raise TopologyFileError(f"{path}: the header {header} has no {' / '.join(names)} column")
    return found


def read_edge_list(path: Path, system: str, version: str | None = None,
                   valid_from: float | None = None) -> Topology:
    """The topology of ``system`` from a CSV edge list (see the module's docstring)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise TopologyFileError(f"{path}: {exc.strerror or exc}") from None
    if not rows:
        raise TopologyFileError(f"{path}: empty file")
    header, body = rows[0], rows[1:]
    source, target = _column(header, SOURCE_NAMES, path, True), _column(header, TARGET_NAMES, path, True)
    weight = _column(header, WEIGHT_NAMES, path, False)
    nodes: dict[str, None] = {}
    edges: list[tuple[str, str, float]] = []
    hosts: dict[str, list[str]] = {}
    for line, row in enumerate(body, start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            a, b = row[source].strip(), row[target].strip()
            w = float(row[weight]) if weight is not None and row[weight].strip() else 1.0
        except (IndexError, ValueError):
            raise TopologyFileError(f"{path}: line {line} is not source,target[,weight]: {row}") from None
        nodes.setdefault(a)
        if _is_address(b):
            hosts.setdefault(a, []).append(b)
            continue
        nodes.setdefault(b)
        edges.append((a, b, w))
    if not nodes:
        raise TopologyFileError(f"{path}: no edges")
    attributes = {n: {"host": h[0] if len(h) == 1 else h} for n, h in hosts.items()}
    now = time.time()
    return Topology(system=system, version=version or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)),
                    valid_from=now if valid_from is None else valid_from, ts=now, nodes=list(nodes), edges=edges,
                    attributes=attributes)


def adjacency(topology: Topology, order: list[str]) -> np.ndarray:
    """(N, N) float32 weights of the calls between the nodes of ``order``, caller row -> callee
    column: repeated edges summed, self-loops and nodes outside ``order`` left out."""
    index = {name: i for i, name in enumerate(order)}
    out = np.zeros((len(order), len(order)), dtype=np.float32)
    for source, target, weight in topology.edges:
        i, j = index.get(source), index.get(target)
        if i is not None and j is not None and i != j:
            out[i, j] += weight
    return out


def publish(topology: Topology, producer_config: dict[str, object], topic: str, timeout: float = 30.0) -> None:
    """Produce ``topology`` to the compacted ``topic``, keyed by its system; raise
    KafkaException when the broker does not acknowledge it within ``timeout`` seconds."""
    from confluent_kafka import KafkaError, KafkaException, Producer

    producer = Producer({**producer_config, "enable.idempotence": True, "acks": "all"})
    failures: list[KafkaError] = []
    producer.produce(topic, key=topology.system.encode(), value=topology.model_dump_json().encode(),
                     on_delivery=lambda err, _msg: failures.append(err) if err is not None else None)
    if producer.flush(timeout) or failures:
        raise KafkaException(failures[0] if failures else KafkaError(KafkaError._MSG_TIMED_OUT))
