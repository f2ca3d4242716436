"""The Faust application: ingest -> points (re-keyed by entity) -> windows, scoring, decisions.

- ingest (stream.ingest_consumer, a confluent-kafka consumer outside Faust, whose per-record
  cost there was most of the worker's, in a process of its own: stream.ingest_process) reads
  every ``<prefix>metrics`` and ``<prefix>metrics.<entity>`` topic (a pattern subscription, so
  new entities' topics are picked up) and the collector topics of ``sources``;
  ``stream.ingest`` validates each record (or decodes and maps a collector's message) and
  forwards the valid points (or samples) keyed by entity, packed by entity (``points``), or
  sends the original bytes to ``metrics-dlq`` with the error in the headers.
- the ``models`` topic is read whole by a listener thread: an announced model is loaded as
  soon as its file's sha256 checks out (stream.announcements).
- ``score`` reads the points topic in batches, assembles the collectors' samples into points
  (ingest.assemble, its open steps in the ``assembly`` table), runs the ``Processor`` and publishes anomaly
  events, scores and transfer requests, and persists each touched entity's window to the
  ``windows`` table, whose changelog restores it after a restart.
This module wires the parts, each in the module of its concern: ingest (stream.ingest_process,
stream.ingest_consumer, stream.ingest), scoring (stream.processor, stream.systems), what a
batch writes and in which order (stream.outputs), the guards over consumption (stream.guards),
health (stream.health), and the Faust glue (stream.faust_worker, which names where it leans on
Faust's internals).
Delivery is at-least-once: each hop commits its input only after the broker holds its output;
the processor drops redelivered points, and event ids are deterministic.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter

import faust

from omnistream.ingest.assemble import Assembler
from omnistream.stream import telemetry
from omnistream.stream.announcements import AnnouncementListener
from omnistream.stream.config import Settings
from omnistream.stream.health import WorkerHealth, serve
from omnistream.stream.faust_worker import credentials, seek_to_start
from omnistream.stream.guards import ConsumptionWatch, GapChecks
from omnistream.stream.ingest import Ingest
from omnistream.stream.ingest_process import IngestProcess
from omnistream.stream.logs import RateLimitedLog
from omnistream.stream.points import Point, Samples, unpack_points
from omnistream.stream.outputs import RAW, Outputs, delivered, drop_state, send_state
from omnistream.stream.processor import Processor
from omnistream.stream.restart import RESTARTS_ENV
from omnistream.stream.scorer import Allowlist, ModelStore, pick_device
from omnistream.stream.systems import SystemProcessor, unpack_system_points
from omnistream.stream.topics import POINTS, SYSTEM_POINTS, BrokerProbe, client_config, ingest_group
from omnistream.stream.topologies import TopologyListener
from omnistream.topology.registry import TopologyRegistry

log = logging.getLogger(__name__)
TOPOLOGY_WAIT = 30  # seconds scoring waits at start for the topology topic to be read


def create_app(settings: Settings, loglevel: str = "INFO") -> faust.App:
    """The worker's Faust app; ``loglevel`` also for the ingest process."""
    k = settings.kafka
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{k.bootstrap}",
        broker_credentials=credentials(k.security),
        store="memory://",
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication,
        datadir=str(settings.data_dir),
        web_enabled=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # Larger buffers let `take_events` fill whole batches, which keeps the model calls big.
        stream_buffer_maxsize=32768,
        broker_max_poll_records=5000,
        producer_linger=0.01,
        broker_session_timeout=k.session_timeout,
        broker_heartbeat_interval=k.heartbeat_every,
        broker_rebalance_timeout=k.rebalance_timeout,
    )
    collectors = Ingest(settings).collectors  # their topics count apart in the lag report
    points = app.topic(settings.topic(POINTS), partitions=k.partitions, internal=False, **RAW)
    outputs = Outputs(app, settings)
    table_configs = {"min.insync.replicas": str(k.min_insync_replicas)} if k.min_insync_replicas else {}
    windows = app.Table("windows", default=None, partitions=k.partitions, key_type=bytes, value_type=bytes,
                        extra_topic_configs=table_configs)
    windows.key_serializer = windows.value_serializer = "raw"  # snapshots are already bytes
    system_windows = app.Table("system-windows", default=None, partitions=k.partitions, key_type=bytes,
                               value_type=bytes, extra_topic_configs=table_configs)
    system_windows.key_serializer = system_windows.value_serializer = "raw"
    assembly = app.Table("assembly", default=None, partitions=k.partitions, key_type=bytes, value_type=bytes,
                         extra_topic_configs=table_configs)
    assembly.key_serializer = assembly.value_serializer = "raw"  # open steps of the collector formats' entities
    if settings.trust_model_folder:
        log.warning("trust_model_folder is on: every file in %s is loaded unchecked, and a TorchScript file runs "
                    "code in this worker", settings.model_dir)
    models = ModelStore(settings.model_dir, pick_device(settings.device),
                        None if settings.trust_model_folder else Allowlist(settings.model_allowlist))
    models.refresh()  # before any record is consumed, so that no known entity looks new
    system_models = ModelStore(settings.model_dir, pick_device(settings.device),
                               None if settings.trust_model_folder else Allowlist(settings.model_allowlist), "system")
    system_models.refresh()
    no_models = RateLimitedLog(log, every=600.0)

    def report_models() -> None:
        telemetry.MODELS_LOADED.set(len(models.models))
        telemetry.MODELS_BY.clear()
        for (detector, strategy), count in Counter((m.info.name, m.info.strategy)
                                                   for m in models.models.values()).items():
            telemetry.MODELS_BY.labels(detector, strategy or "scratch").set(count)
        telemetry.MODEL_FOLDER_EMPTY.set(int(not models.models))
        if models.models:
            no_models.reset(f"{len(models.models)} models loaded")
        else:
            where = (f"{len(models.refused)} files refused as untrusted" if models.refused else "holds no model file") \
                if models.folder.is_dir() else "does not exist"
            no_models.warning("no model to score with: %s %s (entities wait for the transfer service)",
                              models.folder, where)

    report_models()

    def restore(entity: str) -> bytes | None:
        return windows.get(entity.encode())

    processor = Processor(settings, models, restore)
    assembler = Assembler(settings.source_topics(), lambda key: assembly.get(key.encode()))
    labelled_systems: dict[str, str] = {}  # entity -> system, from a source's system label
    app.omnistream_processor = processor  # for tests and the demo
    topologies = TopologyRegistry(settings.systems.max_nodes)
    systems = SystemProcessor(settings, system_models, topologies, lambda system: system_windows.get(system.encode()))
    members: dict[str, list[str]] = systems.members()  # entity -> systems whose model reads it; on each refresh
    topology_listener = TopologyListener(settings.topic("topology"), client_config(settings), topologies)

    # A daemon thread: it holds no state to save and ends with the process.
    listener = AnnouncementListener(settings.topic("models"), client_config(settings), models,
                                    lambda entity: report_models())

    health = WorkerHealth()
    app.omnistream_health = health
    if settings.metrics_port:  # from the start: `starting` (table recovery) shows on /ready too
        serve(health, settings.metrics_port, settings.metrics_host)
    telemetry.WORKER_RESTARTS.set(int(os.environ.get(RESTARTS_ENV, "0")))
    probe = BrokerProbe(client_config(settings), settings.topic("metrics"))

    ingest = IngestProcess(settings, loglevel)
    app.omnistream_ingest = ingest  # told to stop at the signal (stream.faust_worker)
    gaps = GapChecks(probe, settings.app_id, ("score", "systems"))

    def held_partitions() -> dict[str, list[tuple[str, int]]]:
        """The partitions this process consumes, by consumer group."""
        consumed = {settings.topic(POINTS), settings.topic(SYSTEM_POINTS)}
        return {settings.app_id: sorted((tp.topic, tp.partition) for tp in app.consumer.assignment()
                                        if tp.topic in consumed),
                ingest_group(settings): sorted(ingest.assignment)}

    watch = ConsumptionWatch(settings, probe, health, set(collectors), held_partitions)

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
        health.set(rebalancing=True)
        gaps.reset()
        partitions = {tp.partition for tp in revoked if tp.topic == settings.topic(POINTS)}
        if partitions:  # in a thread: it waits for a batch in progress to finish
            dropped = await app.loop.run_in_executor(None, processor.forget, partitions)
            await app.loop.run_in_executor(None, assembler.forget, partitions)
            log.info("partitions %s revoked: %d entities' windows dropped from memory", sorted(partitions), dropped)
        partitions = {tp.partition for tp in revoked if tp.topic == settings.topic(SYSTEM_POINTS)}
        if partitions:
            await app.loop.run_in_executor(None, systems.forget, partitions)

    @app.on_rebalance_complete.connect
    async def rebalanced(app: faust.App, **kwargs: object) -> None:
        started = await seek_to_start(app, {settings.topic(POINTS), settings.topic(SYSTEM_POINTS)})
        if started:
            log.debug("partitions positioned at their start: %s", started)
        health.set(rebalancing=False)
        watch.progress.reset()

    @app.task
    async def on_started() -> None:  # tasks start once the tables are recovered
        listener.start()
        topology_listener.start()
        ingest.start()
        health.set(started=True)

    @app.on_before_shutdown.connect
    async def stop_ingest(app: faust.App, **kwargs: object) -> None:
        """The batch in hand delivered and committed, then the group left (in a thread: it waits)."""
        if not await app.loop.run_in_executor(None, ingest.stop, settings.shutdown_seconds):
            log.warning("the ingest hop did not stop within %.0f s", settings.shutdown_seconds)

    outage = RateLimitedLog(log, every=60.0)

    @app.timer(interval=k.probe_every)
    async def probe_broker() -> None:
        health.beat()
        try:
            await app.loop.run_in_executor(None, probe.check, k.probe_every)
        except Exception as exc:
            telemetry.BROKER_ERRORS.labels("probe").inc()
            outage.warning("broker unreachable (%s); the worker waits and resumes where it stopped", exc)
            health.set(broker_down=True)
            watch.progress.reset()
            return
        if health.broker_down:
            outage.reset("broker reachable again")
            health.set(broker_down=False)

    @app.timer(interval=max(k.probe_every, k.stall_after / 6) if k.stall_after else k.probe_every)
    async def watch_consumption() -> None:
        await watch.check()

    @app.timer(interval=30.0)
    async def reload_models() -> None:
        # In a thread: hashing and loading files must not hold up the event loop.
        await app.loop.run_in_executor(None, models.refresh)
        await app.loop.run_in_executor(None, system_models.refresh)
        members.clear()
        members.update(systems.members())
        report_models()

    async def know_topologies() -> None:
        """Wait (up to TOPOLOGY_WAIT seconds) until the topologies the topic held at start are read:
        scores of a system's entities made before would not reach their system."""
        if not await app.loop.run_in_executor(None, topology_listener.caught_up.wait, TOPOLOGY_WAIT):
            log.warning("the topology topic was not read to its end within %d s: scoring starts without it; "
                        "systems learn their topology when it arrives", TOPOLOGY_WAIT)

    def assemble(sampled: list[Samples]) -> list[Point]:
        """The points of the steps that the sample messages close (ingest.assemble)."""
        out, late = [], 0
        for m in sampled:
            got = assembler.add(m.entity, m.source, m.partition, m.offset, m.samples)
            late += got.late
            out.extend(Point(m.entity, ts, metrics, m.source, m.partition, m.received) for ts, metrics in got.points)
            if m.system:
                labelled_systems[m.entity] = m.system
        telemetry.SAMPLES_LATE.inc(late)
        return out

    @app.agent(points)
    async def score(stream: faust.StreamT) -> None:
        await know_topologies()
        async for events in stream.take_events(settings.window.batch_max, within=settings.window.batch_within):
            await gaps.check(events, "score")
            started = time.perf_counter()
            batch, sampled = unpack_points((event.value, event.message.partition, event.message.offset)
                                           for event in events)
            # In a thread (torch releases the GIL) so that ingestion goes on meanwhile; batches
            # are still processed one at a time, in order.
            assembled = await app.loop.run_in_executor(None, assemble, sampled)
            batch.extend(assembled)
            outcome = await app.loop.run_in_executor(None, processor.process, batch)
            for event in outcome.anomalies:  # an entity's event names its system, whose incident it is part of
                event.system = event.system or next(iter(members.get(event.entity, ())), None) \
                    or next(iter(topologies.systems_of(event.entity)), None) or labelled_systems.get(event.entity)
            sent = await outputs.decisions(outcome)
            sent += await outputs.transfer_requests(outcome.transfers)
            sent += await outputs.to_systems(batch, outcome.scores, members, systems, topologies)
            await delivered(sent, "outputs")  # outputs first, state after (stream.outputs)
            now = time.time()
            for received in {point.received for point in batch if point.received}:  # one per ingest batch and entity
                telemetry.END_TO_END.observe(now - received)
            telemetry.POINTS_FLAGGED.inc(sum(r.calibrated_score >= 1.0 for r in outcome.scores))
            # An entity idle and without a model: its state goes.
            await delivered(send_state(windows, outcome.snapshots) + drop_state(windows, outcome.dropped),
                            "window state")
            # The open steps last: saved before the windows, they could mark samples applied whose
            # points the windows never got; saved after, a crash between only makes the restart
            # emit those points again, which the windows drop as already seen.
            if sampled:
                keys = {Assembler.key(m.entity, m.source) for m in sampled}
                await delivered(send_state(assembly, assembler.snapshots(keys)), "open steps")
            if outcome.quarantined:
                telemetry.MODELS_QUARANTINED.inc()
                report_models()
            telemetry.RECORDS_LATE.inc(outcome.late)
            telemetry.POINTS_SCORED.inc(outcome.scored)
            for size in outcome.batch_sizes:
                telemetry.BATCH_SIZE.observe(size)
            telemetry.SCORE_SECONDS.observe(outcome.score_seconds)
            telemetry.BATCH_SECONDS.observe(time.perf_counter() - started)
            telemetry.LAST_BATCH.set_to_current_time()
            telemetry.OPEN_INCIDENTS.set(processor.open_incidents())
            telemetry.ENTITIES_IN_MEMORY.set(len(processor.windows))

    @app.agent(outputs.system_points)
    async def score_systems(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.window.batch_max, within=settings.window.batch_within):
            await gaps.check(events, "systems")
            batches = unpack_system_points((event.value, event.message.partition) for event in events)
            outcome = await app.loop.run_in_executor(None, systems.process, batches)
            await delivered(await outputs.decisions(outcome), "system outputs")
            await delivered(send_state(system_windows, outcome.snapshots), "system state")
            if outcome.quarantined:
                telemetry.MODELS_QUARANTINED.inc()
            telemetry.POINTS_SCORED.inc(outcome.scored)

    return app
