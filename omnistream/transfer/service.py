"""`omnistream transfer`: the Kafka service that turns a new (or drifted) entity's first data
into a serving model (OmniTransfer section 4.4, online).

Instances share a consumer group on ``transfer-requests``: partitions spread the load and a
crashed instance's uncommitted requests go to another. A request's offset is committed only
once it is served or has failed for good, so a request waiting for data survives a crash.
For each request: read the entity's points back from its metric topic; as soon as there is
one window, publish the nearest cluster's base model for it (cold start, strategy ``base``);
once there are ``transfer.points`` points, match the cluster again, choose full or partial
transfer by DiffScore, train, calibrate, export atomically into the model store and announce
it on ``models`` with its sha256. Progress goes to the compacted ``transfer-status`` topic.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from pydantic import ValidationError

from omnistream.detectors.base import Detector
from omnistream.detectors.export import load as load_model
from omnistream.offline.datasets import series_from_rows
from omnistream.offline.fit import Calibration, Fitted, export_fitted, model_info
from omnistream.stream.config import Settings
from omnistream.stream.records import ModelAnnouncement, TransferRequest, TransferStatus, dumps
from omnistream.stream.topics import POINTS, client_config
from omnistream.transfer.adapt import cold_start, transfer
from omnistream.transfer.base_models import base_folder, load_detector, load_index
from omnistream.transfer.gather import Gatherer, TopicMissing
from omnistream.transfer import telemetry
from omnistream.transfer.registry import ClusterRegistry, RegistryError

log = logging.getLogger(__name__)
MAX_MISSING_SHARE = 0.5  # an entity with more missing values than this cannot be trained on
UNKNOWN_AFTER = 600.0  # seconds a request's topic may be missing before the entity counts as unknown


class RequestFailed(ValueError):
    """A request that cannot be served, ever; the message is the status detail."""


@dataclass
class Pending:
    request: TransferRequest
    partition: int
    offset: int
    attempts: int = 0
    next_try: float = 0.0
    cold_started: bool = False


class BaseModels:
    """The registry and its base models, loaded once per service."""

    def __init__(self, folder: Path):
        self.registry = ClusterRegistry.load(folder)
        self.base_index = load_index(folder)
        self.index = self.base_index.models
        missing = set(range(self.registry.count)) - set(self.index)
        if missing:
            raise RegistryError(f"clusters {sorted(missing)} have no base model; run `omnistream fit --per-cluster`")
        self.folder = base_folder(folder)
        self._detectors: dict[int, Detector] = {}
        self._calibrations: dict[int, dict] = {}

    def detector(self, cluster: int) -> Detector:
        if cluster not in self._detectors:
            self._detectors[cluster] = load_detector(self.folder / self.index[cluster].checkpoint)
        return self._detectors[cluster]

    def calibration(self, cluster: int) -> dict:
        if cluster not in self._calibrations:
            _, info = load_model(self.folder / self.index[cluster].model)
            self._calibrations[cluster] = info.calibration
        return self._calibrations[cluster]

    @property
    def window(self) -> int:
        return max(self.detector(c).window for c in self.index)


def entity_series(rows: list[tuple[float, dict]], metrics: list[str]) -> np.ndarray:
    """The entity's points as (T, M) in the registry's metric order; clear errors for data no
    model can learn from."""
    seen = set().union(*(m.keys() for _, m in rows)) if rows else set()
    missing = [m for m in metrics if m not in seen]
    if missing:
        raise RequestFailed(f"the entity lacks metrics its cluster models read: {', '.join(missing[:10])}"
                            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    series = series_from_rows(rows, metrics)
    missing_share = float(np.isnan(series).mean())
    if missing_share > MAX_MISSING_SHARE:
        raise RequestFailed(f"{missing_share:.0%} of the entity's values are missing (at most "
                            f"{MAX_MISSING_SHARE:.0%} can be learnt from)")
    if np.all(np.nan_to_num(np.nanstd(series, axis=0)) < 1e-9):
        raise RequestFailed("every metric of the entity is constant: there is nothing to learn")
    return series


class TransferService:
    def __init__(self, settings: Settings, instance: str = ""):
        self.settings = settings
        self.base = BaseModels(settings.transfer.registry)
        self.config = self.base.base_index.resolve(settings.transfer)
        self.calibration = Calibration()
        client = client_config(settings)
        self.consumer = Consumer({**client, "group.id": f"{settings.app_id}-transfer",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "max.poll.interval.ms": 3_600_000,  # training runs between polls
                                  # heartbeats run in librdkafka's thread: a crashed instance's
                                  # requests move to another within about 10 s
                                  "session.timeout.ms": 10_000,
                                  **({"group.instance.id": instance} if instance else {})})
        self.producer = Producer({**client, "acks": "all", "linger.ms": 5})
        self.gatherer = Gatherer(client, settings.kafka.topic_prefix, self.config.scan_timeout,
                                 {t: s for t, s in settings.source_topics().items() if s.format != "omnistream"},
                                 settings.topic(POINTS))
        self.pending: dict[str, Pending] = {}  # entity -> its newest request
        self.open_offsets: dict[int, set[int]] = {}  # partition -> offsets not yet served
        self.seen: dict[int, int] = {}  # partition -> highest offset received
        self.committed: dict[int, int] = {}  # partition -> offset last committed

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event, until: float | None = None) -> None:
        topic = self.settings.topic("transfer-requests")
        self.consumer.subscribe([topic], on_revoke=self._revoked)
        log.info("transfer service on %s (registry %s, %d clusters, base models %s, beta %.3g)", topic,
                 self.base.registry.version, self.base.registry.count,
                 ", ".join(sorted({e.detector for e in self.base.index.values()})), self.config.beta)
        try:
            while not stop.is_set() and (until is None or time.time() < until):
                msg = self.consumer.poll(0.2)
                if msg is not None and not msg.error():
                    self._receive(msg)
                elif msg is not None:
                    log.warning("transfer-requests: %s", msg.error())
                self._serve_due()
                self._commit()
                telemetry.PENDING.set(len(self.pending))
        finally:
            self.producer.flush(10)
            self.consumer.close()
            self.gatherer.close()

    def _receive(self, msg) -> None:
        p, offset = msg.partition(), msg.offset()
        self.seen[p] = max(self.seen.get(p, -1), offset)
        try:
            request = TransferRequest.model_validate_json(msg.value() or b"")
        except ValidationError as exc:
            log.error("skipping a malformed transfer request at %s[%d]@%d: %s", msg.topic(), p, offset,
                      exc.errors()[0]["msg"])
            return
        self.open_offsets.setdefault(p, set()).add(offset)
        previous = self.pending.get(request.entity)
        if previous is not None:  # the newer request supersedes it
            self.open_offsets[previous.partition].discard(previous.offset)
        self.pending[request.entity] = Pending(request, p, offset,
                                               cold_started=bool(previous and previous.cold_started))
        log.info("request %s: %s for %s", request.request_id[:12], request.reason, request.entity)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self.pending = {e: q for e, q in self.pending.items() if q.partition not in gone}
        for p in gone:
            self.open_offsets.pop(p, None)
            self.seen.pop(p, None)
            self.committed.pop(p, None)

    def _commit(self) -> None:
        topic = self.settings.topic("transfer-requests")
        wanted = {p: min(self.open_offsets.get(p) or {last + 1}) for p, last in self.seen.items()}
        changed = {p: o for p, o in wanted.items() if self.committed.get(p) != o}
        if changed:
            try:
                self.consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in changed.items()],
                                     asynchronous=False)
                self.committed.update(changed)
            except KafkaException as exc:
                log.warning("commit failed (retried on the next loop): %s", exc)

    def _serve_due(self) -> None:
        now = time.time()
        for entity, pending in list(self.pending.items()):
            if pending.next_try > now:
                continue
            pending.attempts += 1
            try:
                done = self.serve(pending)
            except RequestFailed as exc:
                self._status(pending, "failed", str(exc))
                log.error("request for %s failed: %s", entity, exc)
                done = True
            except (KafkaException, TopicMissing) as exc:
                age = now - pending.request.ts
                if isinstance(exc, TopicMissing) and age > UNKNOWN_AFTER:
                    self._status(pending, "failed", f"{exc} (still, {age:.0f} s after the request): unknown entity")
                    done = True
                else:
                    self._status(pending, "waiting", f"{exc}; retrying")
                    done = False
            except Exception as exc:  # e.g. an export that fails its parity check: say so, go on
                log.exception("request for %s failed", entity)
                self._status(pending, "failed", f"{type(exc).__name__}: {exc}")
                done = True
            if done:
                self.open_offsets.get(pending.partition, set()).discard(pending.offset)
                self.pending.pop(entity, None)
                self.gatherer.forget(pending.request.data.topic, entity)
            else:
                pending.next_try = time.time() + self.config.retry_every

    # -- one request --------------------------------------------------------------------------
    def serve(self, pending: Pending) -> bool:
        """One look at a request; True when it is done (served), False to try again later."""
        request = pending.request
        rows = self.gatherer.points(request.data.topic, request.entity, request.data.from_ts)
        window = self.base.window
        if len(rows) < max(window, self.base.registry.settings.length):
            self._status(pending, "waiting", f"{len(rows)} points; a first model needs "
                         f"{max(window, self.base.registry.settings.length)}", len(rows))
            return False
        series = entity_series(rows, self.base.registry.metrics)
        if len(rows) < self.config.points:
            # A drifted or scheduled entity keeps its own model until the new one is ready.
            if self.config.cold_start and request.reason == "new_entity" and not pending.cold_started:
                self._cold_start(pending, series, rows)
                pending.cold_started = True
            self._status(pending, "cold_start" if pending.cold_started else "waiting",
                         f"{len(rows)} of {self.config.points} points for a transfer", len(rows))
            return False
        self._transfer(pending, series[: self.config.points], rows[: self.config.points])
        return True

    def _cold_start(self, pending: Pending, series: np.ndarray, rows: list) -> None:
        cluster, distance = self.base.registry.nearest_cluster(series)
        base = self.base.detector(cluster)
        try:
            fitted = cold_start(base, self.base.calibration(cluster), series)
        except TypeError as exc:  # a detector without layers to carry over: no cold start
            log.info("%s: %s", pending.request.entity, exc)
            return
        self._publish(pending, fitted, cluster, distance, "base", None, series, len(rows), 0.0)

    def _transfer(self, pending: Pending, series: np.ndarray, rows: list) -> None:
        self._status(pending, "training", f"transfer on {len(rows)} points", len(rows))
        cluster, distance = self.base.registry.nearest_cluster(series)
        entry = self.base.index[cluster]
        result = transfer(self.base.detector(cluster), entry.reference, series, self.config, self.calibration)
        self._publish(pending, result.fitted, cluster, distance, result.strategy, result.diff_score, series,
                      len(rows), result.cpu_seconds)

    def _publish(self, pending: Pending, fitted: Fitted, cluster: int, distance: float, strategy: str,
                 diff: float | None, series: np.ndarray, points: int, cpu_seconds: float) -> None:
        request, entity = pending.request, pending.request.entity
        entry = self.base.index[cluster]
        info = model_info(fitted, self.base.registry.metrics, entity=entity, cluster=str(cluster), strategy=strategy,
                          diff_score=diff, distance=distance, base_sha256=entry.sha256, request_id=request.request_id,
                          points=points, cpu_seconds=round(cpu_seconds, 3))
        path = Path(self.settings.model_dir) / f"{entity}.pt"
        sha = export_fitted(fitted, path, info, series)
        now = time.time()
        announcement = ModelAnnouncement(
            name=info.name, version=info.version, uri=str(path.resolve()), sha256=sha, entity=entity,
            cluster=str(cluster), strategy=strategy, diff_score=diff, base_sha256=entry.sha256,
            metrics={"points": points, "distance": round(distance, 4), "cpu_seconds": round(cpu_seconds, 3),
                     "request_to_announce_s": round(now - request.ts, 3), "reason": request.reason},
            ts=now)
        self.producer.produce(self.settings.topic("models"), key=entity.encode(), value=dumps(announcement))
        self.producer.flush(10)
        telemetry.MODELS.labels(strategy).inc()
        telemetry.REQUEST_TO_ANNOUNCE.observe(max(0.0, now - request.ts))
        self._status(pending, "done" if strategy != "base" else "cold_start",
                     f"{strategy} model from cluster {cluster} announced (sha256 {sha[:12]})", points)
        log.info("%s: %s model from cluster %d (distance %.3g, DiffScore %s) announced %.1f s after the request",
                 entity, strategy, cluster, distance, "-" if diff is None else f"{diff:.3g}", now - request.ts)

    def _status(self, pending: Pending, state: str, detail: str, points: int = 0) -> None:
        r = pending.request
        status = TransferStatus(entity=r.entity, request_id=r.request_id, reason=r.reason, state=state, detail=detail,
                                points=points, attempts=pending.attempts, ts=time.time())
        self.producer.produce(self.settings.topic("transfer-status"), key=r.entity.encode(), value=dumps(status))
        self.producer.poll(0)
        telemetry.STATES.labels(state).inc()
