"""The worker's guards over its own consumption: a batch that skipped records (stream.gaps) and
a partition whose committed offset stopped moving (stream.progress) each end the process,
whose restart resumes from the committed offsets; and the consumer lag per partition.

Both exist for Faust's consumer, whose fetch loop was seen to skip or stop after a restart; the
ingest hop's own librdkafka consumer is watched for lag and stalls too (stream.ingest_consumer).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from omnistream.stream import telemetry
from omnistream.stream.config import Settings
from omnistream.stream.gaps import GapGuard
from omnistream.stream.health import WorkerHealth
from omnistream.stream.logs import RateLimitedLog
from omnistream.stream.progress import ProgressWatch
from omnistream.stream.shutdown import end_process
from omnistream.stream.topics import POINTS, SYSTEM_POINTS, BrokerProbe

log = logging.getLogger(__name__)
STALLED_EXIT = 4  # the process ends with this code when consumption stalls; the command restarts it
SKIPPED_EXIT = 5  # ... and with this one when the consumer skipped records


class GapChecks:
    """One gap guard per agent of Faust's group: each batch must continue where the last ended,
    or start at the group's committed offset."""

    def __init__(self, probe: BrokerProbe, group: str, agents: tuple[str, ...]):
        self.guards = {agent: GapGuard(lambda partitions: probe.committed(group, partitions), probe.has_records)
                       for agent in agents}
        self.cannot_check = RateLimitedLog(log, every=60.0)

    def reset(self) -> None:
        """After a rebalance: the next batches start from committed offsets again."""
        for guard in self.guards.values():
            guard.reset()

    async def check(self, events: list, agent: str) -> None:
        """Stop before a batch of Faust events that jumps past records never received. While the
        broker cannot say, the batch waits, as it would in an outage."""
        offsets = [(e.message.topic, e.message.partition, e.message.offset) for e in events]
        loop = asyncio.get_running_loop()
        while True:
            try:
                holes = await loop.run_in_executor(None, self.guards[agent].holes, offsets)
                break
            except Exception as exc:
                telemetry.BROKER_ERRORS.labels("gap_check").inc()
                self.cannot_check.warning("cannot check a batch's offsets against the group's (%s); retrying", exc)
                await asyncio.sleep(1.0)
        self.cannot_check.reset("batch offsets checked again")
        if holes:
            end_process(SKIPPED_EXIT, log, "the consumer skipped records (%s): stopping the process before this "
                        "batch, whose restart re-reads from the committed offsets",
                        "; ".join(f"{t}[{p}] offsets {a}..{b - 1}" for t, p, a, b in holes))


class ConsumptionWatch:
    """Reports the consumer lag of every partition this process holds, by kind of topic, and
    ends the process when a held partition keeps records waiting while its committed offset
    stays put for ``kafka.stall_after`` seconds: a silent stall would score nothing, for ever."""

    def __init__(self, settings: Settings, probe: BrokerProbe, health: WorkerHealth, collectors: set[str],
                 held: Callable[[], dict[str, list[tuple[str, int]]]]):
        self.settings, self.probe, self.health, self.collectors, self.held = settings, probe, health, collectors, held
        self.progress = ProgressWatch(settings.kafka.stall_after)
        self.internal = {settings.topic(POINTS): "points", settings.topic(SYSTEM_POINTS): "system_points"}

    async def check(self) -> None:
        if self.health.state != "running":
            return
        committed: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        loop = asyncio.get_running_loop()
        try:
            for group, held in self.held().items():  # the topics of the groups are distinct
                done, end = await loop.run_in_executor(None, self.probe.offsets, group, held)
                committed.update(done)
                ends.update(end)
        except Exception as exc:  # the broker probe reports outages; judge progress when it is back
            log.debug("cannot read the groups' offsets (%s)", exc)
            self.progress.reset()
            return
        self.report_lag(committed, ends)
        stalled = self.progress.observe(committed, ends) if self.settings.kafka.stall_after else []
        if stalled and self.health.state == "running":
            end_process(STALLED_EXIT, log, "consumption stalled (committed offset not moving, records waiting): "
                        "%s; stopping the process, whose restart resumes from the committed offsets",
                        "; ".join(stalled))

    def report_lag(self, committed: dict, ends: dict) -> None:
        """Records waiting per partition, by kind of topic (bounded labels: no entity names)."""
        waiting: Counter = Counter()
        for (topic, partition), end in ends.items():
            kind = self.internal.get(topic) or ("collector" if topic in self.collectors else "metrics")
            waiting[kind, str(partition)] += max(0, end - max(committed.get((topic, partition), 0), 0))
        telemetry.CONSUMER_LAG.clear()
        for (kind, partition), count in waiting.items():
            telemetry.CONSUMER_LAG.labels(kind, partition).set(count)
