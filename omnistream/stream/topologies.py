"""The worker's listener on the compacted ``topology`` topic: each system's latest call graph
into the topology registry, read whole by every instance (a system's entities sit on any
partition). A malformed, oversized or tombstoned topology is logged and counted; it never
replaces a good graph with a bad one, and never stops the worker."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from omnistream.stream import telemetry
from omnistream.stream.compacted import CompactedTopicReader
from omnistream.stream.records import Topology
from omnistream.topology.registry import TopologyRegistry

log = logging.getLogger(__name__)


class TopologyListener(CompactedTopicReader):
    def __init__(self, topic: str, client_config: dict[str, object], registry: TopologyRegistry,
                 on_change: Callable[[str], None] = lambda system: None):
        super().__init__("topology", topic, client_config)
        self.registry, self.on_change = registry, on_change

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            system = key.decode("utf-8", "replace") if key else ""
            if self.registry.remove(system):
                log.info("topology of %s removed (tombstone): its system is no longer scored", system)
                self.on_change(system)
            telemetry.TOPOLOGIES.set(len(self.registry.systems))
            return
        try:
            topology = Topology.model_validate_json(value)
        except ValidationError as exc:
            telemetry.TOPOLOGIES_REFUSED.inc()
            log.error("skipping a malformed topology: %s", exc.errors()[0]["msg"])
            return
        applied = self.registry.apply(topology)
        for remark in applied.remarks:
            log.warning("topology of %s: %s", topology.system, remark)
        if applied.refused:
            telemetry.TOPOLOGIES_REFUSED.inc()
            log.error("topology of %s version %s refused: %s", topology.system, topology.version, applied.refused)
        elif applied.changed:
            log.info("topology of %s version %s: %d nodes, %d calls", topology.system, topology.version,
                     len(topology.nodes), len(topology.edges))
            self.on_change(topology.system)
        telemetry.TOPOLOGIES.set(len(self.registry.systems))
