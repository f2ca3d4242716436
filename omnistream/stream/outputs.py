"""What a scoring batch writes, and the wait until the broker holds it.

Order of a batch (stream.app): outputs first (anomaly events, scores, transfer requests, the
points and scores its systems read), state after (window snapshots, then the collectors' open
steps). A crash between the two repeats the outputs with the same ids, whereas state written
first could mark points done whose outputs were lost.

Messages go straight to the Kafka producer (which batches them; Faust's own send buffer would
throttle a batch of thousands a hundred at a time), and each batch waits for its delivery
futures before the next, so Faust's commit of its input never covers a lost message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable

import faust

from omnistream.stream import telemetry
from omnistream.stream.config import Settings
from omnistream.stream.fleet import fleet_scores
from omnistream.stream.points import Point
from omnistream.stream.records import ScoreRecord, TransferRequest, dumps
from omnistream.stream.shutdown import UNDELIVERED_EXIT, end_process
from omnistream.stream.systems import SystemProcessor, pack_fleet_scores, pack_system_points
from omnistream.stream.topics import SYSTEM_POINTS
from omnistream.topology.registry import TopologyRegistry

log = logging.getLogger(__name__)
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


async def delivered(futures: list, what: str) -> None:
    """Wait until the broker holds every message of a batch. One that failed ends the process
    (in an outage the client may drop what it could not send): the restart redoes the batch
    from the last commit and the window changelog."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        end_process(UNDELIVERED_EXIT, log, "%d of %d %s messages were not delivered (%r): stopping the process, "
                    "whose restart redoes the batch from the last commit", len(failed), len(futures), what, failed[0])


def send_state(table: faust.Table, snapshots: dict[str, tuple[int, bytes]]) -> list:
    """Hold each snapshot in ``table`` and send it to its changelog partition; the futures."""
    sent = []
    for name, (partition, blob) in snapshots.items():
        key = name.encode()
        table.data[key] = blob
        sent.append(table.send_changelog(partition, key, blob))
    return sent


def drop_state(table: faust.Table, dropped: Iterable[tuple[str, int]]) -> list:
    """Remove each (name, partition) from ``table`` with a tombstone on its changelog; the futures."""
    sent = []
    for name, partition in dropped:
        key = name.encode()
        if table.data.pop(key, None) is not None:
            sent.append(table.send_changelog(partition, key, None))
    return sent


class Outputs:
    """The output topics of the worker, and sends that return their delivery futures."""

    def __init__(self, app: faust.App, settings: Settings):
        self.settings = settings
        self.anomalies = app.topic(settings.topic("anomalies"), **RAW)
        self.scores = app.topic(settings.topic("scores"), **RAW)
        self.transfers = app.topic(settings.topic("transfer-requests"), **RAW)
        # Read back by the systems' agent: co-partitioned with their window table.
        self.system_points = app.topic(settings.topic(SYSTEM_POINTS), partitions=settings.kafka.partitions,
                                       internal=False, **RAW)

    async def decisions(self, outcome) -> list:
        """A batch's anomaly events (and every score, when published)."""
        sent = []
        for event in outcome.anomalies:
            sent.append(await self.anomalies.send(key=event.entity.encode(), value=dumps(event)))
            telemetry.EVENTS_OUT.labels(event.state).inc()
        if self.settings.decide.publish_scores:
            for record in outcome.scores:
                sent.append(await self.scores.send(key=record.entity.encode(), value=dumps(record)))
        return sent

    async def transfer_requests(self, requests: list[TransferRequest]) -> list:
        sent = []
        for request in requests:
            sent.append(await self.transfers.send(key=request.entity.encode(), value=dumps(request)))
            telemetry.TRANSFER_REQUESTS.labels(request.reason).inc()
        return sent

    async def to_systems(self, batch: list[Point], scores: list[ScoreRecord], members: dict[str, list[str]],
                         systems: SystemProcessor, topologies: TopologyRegistry) -> list:
        """The batch's points, keyed by system, for each system model that reads their entity;
        and, for systems without a model, their entities' scores (stream.fleet)."""
        sent = []
        by_system: dict[str, list] = defaultdict(list)
        for point in batch if members else ():
            for system in members.get(point.entity, ()):
                by_system[system].append((point.entity, point.ts, point.metrics))
        for system, points_of in by_system.items():
            for value in pack_system_points(system, points_of):
                sent.append(await self.system_points.send(key=system.encode(), value=value))
        by_fleet: dict[str, list] = defaultdict(list)
        for record in scores if topologies.systems else ():
            for system in systems.fleets_of(record.entity):
                by_fleet[system].append(record)
        for system, records in by_fleet.items():
            for value in pack_fleet_scores(system, fleet_scores(records)):
                sent.append(await self.system_points.send(key=system.encode(), value=value))
        return sent
