"""The latest topology of every system, as a worker holds it: which systems an entity belongs
to, and what changed. Pure (no Kafka): stream.topologies feeds it from the compacted
``topology`` topic. A bad or oversized topology never replaces a good one; it is reported."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from omnistream.stream.records import Topology

DEFAULT_MAX_NODES = 1000  # a dense N x N graph of 1,000 nodes is 4 MB; 10,000 would be 400 MB per model


@dataclass
class Applied:
    """What one topology message did: ``changed`` when the system's graph is new or different,
    ``refused`` with the reason when it was not taken, and remarks worth a log line."""

    system: str
    changed: bool = False
    refused: str | None = None
    remarks: list[str] = field(default_factory=list)


class TopologyRegistry:
    """Systems by name, and the systems each entity belongs to (thread-safe)."""

    def __init__(self, max_nodes: int = DEFAULT_MAX_NODES):
        self.max_nodes = max_nodes
        self.systems: dict[str, Topology] = {}
        self._members: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def apply(self, topology: Topology) -> Applied:
        done = Applied(topology.system, remarks=topology.remarks())
        if len(topology.nodes) > self.max_nodes:
            done.refused = (f"{len(topology.nodes)} nodes, over topology.max_nodes ({self.max_nodes}); "
                            "the system keeps its previous graph")
            return done
        with self._lock:
            held = self.systems.get(topology.system)
            same = held is not None and (held.nodes, held.edges) == (topology.nodes, topology.edges)
            self.systems[topology.system] = topology
            self._reindex()
        done.changed = not same
        shared = sorted(e for e in topology.nodes if len(self._members.get(e, ())) > 1)
        if shared and done.changed:
            done.remarks.append(f"entities in more than one system (each system scores them): {', '.join(shared[:5])}")
        return done

    def remove(self, system: str) -> bool:
        """A tombstone: the system is gone. True when it was held."""
        with self._lock:
            gone = self.systems.pop(system, None) is not None
            self._reindex()
        return gone

    def systems_of(self, entity: str) -> list[str]:
        return sorted(self._members.get(entity, ()))

    def get(self, system: str) -> Topology | None:
        return self.systems.get(system)

    def _reindex(self) -> None:
        members: dict[str, set[str]] = {}
        for name, topology in self.systems.items():
            for node in topology.nodes:
                members.setdefault(node, set()).add(name)
        self._members = members
