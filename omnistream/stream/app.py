"""The Faust application: ingest -> points (re-keyed by entity) -> windows, scoring, decisions.

- ingest (stream.ingest_consumer, a confluent-kafka consumer in a thread, outside Faust: its
  per-record cost there was most of the worker's) reads every ``<prefix>metrics`` and
  ``<prefix>metrics.<entity>`` topic (a pattern subscription, so new entities' topics are
  picked up) and the collector topics of ``sources``; ``stream.ingest`` validates each record
  (or decodes and maps a collector's message) and forwards the valid points (or samples) keyed
  by entity, packed by entity (``points``), or sends the original bytes to ``metrics-dlq`` with
  the error in the headers.
- the ``models`` topic is read whole by a listener thread: an announced model is loaded as
  soon as its file's sha256 checks out (stream.announcements).
- ``score`` reads the points topic in batches, assembles the collectors' samples into points
  (ingest.assemble, its open steps in the ``assembly`` table), runs the ``Processor`` and publishes anomaly
  events, scores and transfer requests, and persists each touched entity's window to the
  ``windows`` table, whose changelog restores it after a restart.
Messages go straight to the Kafka producer (which batches them; Faust's own send buffer would
throttle a batch of thousands a hundred at a time), and Faust flushes the producer before it
commits offsets, so delivery is at-least-once; the processor drops redelivered points, and
event ids are deterministic.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections import Counter, defaultdict

import faust

from omnistream.ingest.assemble import Assembler
from omnistream.stream import telemetry
from omnistream.stream.announcements import AnnouncementListener
from omnistream.stream.config import Settings
from omnistream.stream.gaps import GapGuard
from omnistream.stream.health import WorkerHealth, serve
from omnistream.stream.ingest import Ingest
from omnistream.stream.ingest_consumer import IngestConsumer
from omnistream.stream.logs import RateLimitedLog, RepeatFilter, use_json
from omnistream.stream.points import Point, Samples, unpack_points
from omnistream.stream.processor import Processor
from omnistream.stream.progress import ProgressWatch
from omnistream.stream.records import dumps
from omnistream.stream.restart import RESTARTS_ENV
from omnistream.stream.scorer import Allowlist, ModelStore, pick_device
from omnistream.stream.shutdown import end_after
from omnistream.stream.fleet import fleet_scores
from omnistream.stream.systems import SystemProcessor, pack_fleet_scores, pack_system_points, unpack_system_points
from omnistream.stream.topics import POINTS, SYSTEM_POINTS, BrokerProbe, client_config, ingest_group
from omnistream.stream.topologies import TopologyListener
from omnistream.topology.registry import TopologyRegistry

log = logging.getLogger(__name__)
STALLED_EXIT = 4  # the process ends with this code when consumption stalls (stream.progress); the command restarts it
SKIPPED_EXIT = 5  # ... and with this one when the consumer skipped records (stream.gaps)
TOPOLOGY_WAIT = 30  # seconds scoring waits at start for the topology topic to be read


def tls_context(security: dict[str, str]) -> ssl.SSLContext:
    """The TLS context of Faust's own client from the librdkafka settings: the CA
    (``ssl.ca.location``) and, for mutual TLS, the client certificate and key
    (``ssl.certificate.location``, ``ssl.key.location``, ``ssl.key.password``)."""
    context = ssl.create_default_context(cafile=security.get("ssl.ca.location"))
    if security.get("ssl.certificate.location"):
        context.load_cert_chain(security["ssl.certificate.location"], security.get("ssl.key.location"),
                                security.get("ssl.key.password"))
    if security.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
        context.check_hostname = False
    return context


def _credentials(security: dict[str, str]) -> faust.types.auth.CredentialsT | None:
    """SASL / TLS settings in librdkafka spelling, for Faust's own client (``sasl.mechanisms``,
    or its alias ``sasl.mechanism``, names the SASL mechanism, e.g. SCRAM-SHA-256)."""
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    context = tls_context(security) if "SSL" in protocol else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=security.get("sasl.username"), password=security.get("sasl.password"),
                                     mechanism=security.get("sasl.mechanism")
                                     or security.get("sasl.mechanisms", "PLAIN"),
                                     ssl_context=context)
    return faust.SSLCredentials(context)


class Worker(faust.Worker):
    """Faust's worker whose log stays readable in an outage (repeated warnings are thinned) and
    whose stop on a signal ends within ``shutdown_seconds`` (stream.shutdown)."""

    shutdown_seconds: float = 10.0
    json_logs: bool = False

    def _schedule_shutdown(self, signal: int) -> None:
        if not self._signal_stop_time:
            end_after(self.shutdown_seconds, self._still_stopping)
        super()._schedule_shutdown(signal)

    def _still_stopping(self) -> str:
        health = getattr(self.app, "omnistream_health", None)
        broker = "the broker is unreachable" if health is not None and health.broker_down else "the broker answers"
        return f"{broker}; the Kafka clients are still closing (last offsets not committed)"

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        if self.json_logs:
            use_json(logger.handlers)
        repeats = RepeatFilter()
        for handler in logger.handlers:
            handler.addFilter(repeats)


def create_app(settings: Settings) -> faust.App:
    k = settings.kafka
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{k.bootstrap}",
        broker_credentials=_credentials(k.security),
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
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    router = Ingest(settings)
    collectors = router.collectors
    points = app.topic(settings.topic(POINTS), partitions=k.partitions, internal=False, **raw)
    anomalies = app.topic(settings.topic("anomalies"), **raw)
    scores = app.topic(settings.topic("scores"), **raw)
    transfers = app.topic(settings.topic("transfer-requests"), **raw)
    system_points = app.topic(settings.topic(SYSTEM_POINTS), partitions=k.partitions, internal=False, **raw)
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

    progress = ProgressWatch(k.stall_after)

    guards = {name: GapGuard(lambda partitions: probe.committed(settings.app_id, partitions), probe.has_records)
              for name in ("score", "systems")}
    ingest = IngestConsumer(settings, router)

    cannot_check = RateLimitedLog(log, every=60.0)

    async def check_gaps(events: list, agent: str) -> None:
        """Stop before a batch that jumps past records never received (stream.gaps). While the
        broker cannot say, the batch waits, as it would in an outage."""
        offsets = [(e.message.topic, e.message.partition, e.message.offset) for e in events]
        while True:
            try:
                holes = await app.loop.run_in_executor(None, guards[agent].holes, offsets)
                break
            except Exception as exc:
                telemetry.BROKER_ERRORS.labels("gap_check").inc()
                cannot_check.warning("cannot check a batch's offsets against the group's (%s); retrying", exc)
                await asyncio.sleep(1.0)
        cannot_check.reset("batch offsets checked again")
        if holes:
            log.critical("the consumer skipped records (%s): stopping the process before this batch, whose restart "
                         "re-reads from the committed offsets",
                         "; ".join(f"{t}[{p}] offsets {a}..{b - 1}" for t, p, a, b in holes))
            logging.shutdown()
            os._exit(SKIPPED_EXIT)

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
        health.set(rebalancing=True)
        for guard in guards.values():
            guard.reset()
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
        health.set(rebalancing=False)
        progress.reset()

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
            progress.reset()
            return
        if health.broker_down:
            outage.reset("broker reachable again")
            health.set(broker_down=False)

    def held_partitions() -> dict[str, list[tuple[str, int]]]:
        """The partitions this process consumes, by consumer group."""
        consumed = {settings.topic(POINTS), settings.topic(SYSTEM_POINTS)}
        return {settings.app_id: sorted((tp.topic, tp.partition) for tp in app.consumer.assignment()
                                        if tp.topic in consumed),
                ingest_group(settings): sorted(ingest.assignment)}

    def report_lag(committed: dict, ends: dict) -> None:
        """Records waiting per partition, by kind of topic (bounded labels: no entity names)."""
        internal = {settings.topic(POINTS): "points", settings.topic(SYSTEM_POINTS): "system_points"}
        waiting: Counter = Counter()
        for (topic, partition), end in ends.items():
            kind = internal.get(topic) or ("collector" if topic in collectors else "metrics")
            waiting[kind, str(partition)] += max(0, end - max(committed.get((topic, partition), 0), 0))
        telemetry.CONSUMER_LAG.clear()
        for (kind, partition), count in waiting.items():
            telemetry.CONSUMER_LAG.labels(kind, partition).set(count)

    @app.timer(interval=max(k.probe_every, k.stall_after / 6) if k.stall_after else k.probe_every)
    async def watch_progress() -> None:
        """Report the consumer lag; and end the process when a held partition keeps records
        waiting and its committed offset stays put for ``kafka.stall_after`` seconds
        (stream.progress): its restart resumes from the committed offsets, where a silent stall
        would score nothing, for ever."""
        if health.state != "running":
            return
        committed, ends = {}, {}
        try:
            for group, held in held_partitions().items():  # the topics of the two groups are distinct
                done, end = await app.loop.run_in_executor(None, probe.offsets, group, held)
                committed.update(done)
                ends.update(end)
        except Exception as exc:  # the broker probe reports outages; judge progress when it is back
            log.debug("cannot read the group's offsets (%s)", exc)
            progress.reset()
            return
        report_lag(committed, ends)
        stalled = progress.observe(committed, ends) if k.stall_after else []
        if stalled and health.state == "running":
            log.critical("consumption stalled (committed offset not moving, records waiting): %s; stopping the "
                         "process, whose restart resumes from the committed offsets", "; ".join(stalled))
            logging.shutdown()
            os._exit(STALLED_EXIT)

    @app.timer(interval=30.0)
    async def reload_models() -> None:
        # In a thread: hashing and loading files must not hold up the event loop.
        await app.loop.run_in_executor(None, models.refresh)
        await app.loop.run_in_executor(None, system_models.refresh)
        members.clear()
        members.update(systems.members())
        report_models()

    async def delivered(futures: list, what: str) -> None:
        """Wait until the broker holds every message of a batch. The batch's input offsets are
        acknowledged only after this, so no commit ever covers a message the broker lost (in an
        outage the client may drop what it could not send). One that failed ends the process:
        the restart redoes the batch from the last commit and the window changelog."""
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.critical("%d of %d %s messages were not delivered (%r): stopping the process, whose restart "
                         "redoes the batch from the last commit", len(failed), len(futures), what, failed[0])
            logging.shutdown()
            os._exit(3)

    async def send_decisions(outcome) -> list:
        """Send a batch's anomaly events (and every score, when published); their futures."""
        sent = []
        for event in outcome.anomalies:
            sent.append(await anomalies.send(key=event.entity.encode(), value=dumps(event)))
            telemetry.EVENTS_OUT.labels(event.state).inc()
        if settings.decide.publish_scores:
            for record in outcome.scores:
                sent.append(await scores.send(key=record.entity.encode(), value=dumps(record)))
        return sent

    def send_state(table: faust.Table, snapshots: dict[str, tuple[int, bytes]]) -> list:
        """Hold each snapshot in ``table`` and send it to its changelog partition; the futures."""
        sent = []
        for name, (partition, blob) in snapshots.items():
            key = name.encode()
            table.data[key] = blob
            sent.append(table.send_changelog(partition, key, blob))
        return sent

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
            await check_gaps(events, "score")
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
            sent = await send_decisions(outcome)
            for request in outcome.transfers:
                sent.append(await transfers.send(key=request.entity.encode(), value=dumps(request)))
                telemetry.TRANSFER_REQUESTS.labels(request.reason).inc()
            by_system: dict[str, list] = defaultdict(list)
            for point in batch if members else ():
                for system in members.get(point.entity, ()):
                    by_system[system].append((point.entity, point.ts, point.metrics))
            for system, points_of in by_system.items():
                for value in pack_system_points(system, points_of):
                    sent.append(await system_points.send(key=system.encode(), value=value))
            by_fleet: dict[str, list] = defaultdict(list)  # systems without a model: their entities' scores
            for record in outcome.scores if topologies.systems else ():
                for system in systems.fleets_of(record.entity):
                    by_fleet[system].append(record)
            for system, records in by_fleet.items():
                for value in pack_fleet_scores(system, fleet_scores(records)):
                    sent.append(await system_points.send(key=system.encode(), value=value))
            # Outputs first, state after: a crash between the two repeats the outputs (the same
            # ids), whereas state written first could mark points done whose outputs were lost.
            await delivered(sent, "outputs")
            now = time.time()
            for point in batch:
                if point.received:
                    telemetry.END_TO_END.observe(now - point.received)
            telemetry.POINTS_FLAGGED.inc(sum(r.calibrated_score >= 1.0 for r in outcome.scores))
            sent = send_state(windows, outcome.snapshots)
            for entity, partition in outcome.dropped:  # idle and without a model: its state goes (a tombstone)
                key = entity.encode()
                if windows.data.pop(key, None) is not None:
                    sent.append(windows.send_changelog(partition, key, None))
            await delivered(sent, "window state")
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

    @app.agent(system_points)
    async def score_systems(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.window.batch_max, within=settings.window.batch_within):
            await check_gaps(events, "systems")
            batches = unpack_system_points((event.value, event.message.partition) for event in events)
            outcome = await app.loop.run_in_executor(None, systems.process, batches)
            await delivered(await send_decisions(outcome), "system outputs")
            await delivered(send_state(system_windows, outcome.snapshots), "system state")
            if outcome.quarantined:
                telemetry.MODELS_QUARANTINED.inc()
            telemetry.POINTS_SCORED.inc(outcome.scored)

    return app
