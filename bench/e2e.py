"""End-to-end throughput: records/s through the real broker and worker, against the same
points processed in-process (no Kafka) in the same run.

Every bench entity is served by a copy of one model fitted on ASD's omi-2 (``--detector``: the
default detector, or the cheapest, ``zscore``, whose in-process rate is far higher and shows
the stream layer's own ceiling; ``demo`` copies the demo's DC-VAE), so many entities can be
scored. A third reference reads the same topics with a batched confluent-kafka ``consume`` and
validates every record, as a bare client would: what Kafka and validation alone cost here.
The records are produced first; the clock runs from the worker being ready until its
consumer group has committed the metric topics and the internal points topic to their ends,
i.e. until every record was consumed, validated, re-keyed, windowed, scored (every point,
stride 1), decided and its window state persisted. Faust commits every few seconds, hence the
default of many records.

With ``--rate`` the worker runs first and the records are produced at that pace (live
traffic): the report says how far behind the worker is when the last record is produced.

    python bench/e2e.py [--detector seasonal|zscore|demo] [--entities 50] [--points 1200] [--rate 0]
                        [--processes 1] [--bootstrap 127.0.0.1:9092]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from timing import resident_mb

from omnistream.offline.datasets import load_asd, metric_names
from omnistream.offline.fit import export_fitted, fit_entity, model_info
from omnistream.stream.config import Settings
from omnistream.stream.points import Point
from omnistream.stream.processor import Processor
from omnistream.stream.records import parse_metric_record
from omnistream.cli.replay import replay
from omnistream.stream.scorer import ModelStore
from omnistream.stream.supervise import WorkerProcess
from omnistream.stream.topics import POINTS, ensure_topics

MODEL = Path(__file__).resolve().parents[1] / "deploy" / "demo" / "models" / "omi-2.pt"
STEP = 300  # seconds between ASD points


def records(entities: int, points: int) -> list[dict]:
    series = load_asd(["omi-2"])[0].test
    names = metric_names(series.shape[1])
    out = []
    for i in range(points):
        for e in range(entities):
            row = series[(i + 37 * e) % len(series)]  # each entity at its own phase
            out.append({"entity": f"bench-{e}", "ts": 1_700_000_000.0 + STEP * i,
                        "metrics": dict(zip(names, row.tolist()))})
    return out


def bench_model(detector: str, folder: Path) -> Path:
    """One model of ``detector`` fitted on ASD's omi-2 and written to ``folder``; ``demo``: the
    demo's DC-VAE file."""
    if detector == "demo":
        return MODEL
    series = load_asd(["omi-2"])[0]
    fitted = fit_entity(detector, series.train)
    path = folder / "fitted.pt"
    export_fitted(fitted, path, model_info(fitted, metric_names(series.train.shape[1])), series.test)
    return path


def model_dir(entities: int, detector: str) -> Path:
    """A folder with one model file per bench entity, copies of one model of ``detector``."""
    folder = Path(tempfile.mkdtemp(prefix="omnistream-bench-models-"))
    model = bench_model(detector, folder)
    for e in range(entities):
        shutil.copyfile(model, folder / f"bench-{e}.pt")
    if model != MODEL:
        model.unlink()
    return folder


def offline_rate(folder: Path, recs: list[dict], entities: int) -> tuple[float, int, float, float]:
    """Records/s of the processor alone, windows scored, and the memory (kB per entity) that
    the loaded models and the held windows take."""
    points = [Point(r["entity"], r["ts"], r["metrics"], "", 0) for r in recs]
    before = resident_mb()
    store = ModelStore(folder)
    store.refresh()
    loaded = resident_mb()
    processor = Processor(Settings(), store)
    t0 = time.perf_counter()
    scored = sum(processor.process(points[i:i + 2000]).scored for i in range(0, len(points), 2000))
    rate = len(points) / (time.perf_counter() - t0)
    return rate, scored, (loaded - before) * 1024 / entities, (resident_mb() - loaded) * 1024 / entities


def client_rate(bootstrap: str, topics: list[str], count: int) -> float:
    """Records/s of a bare confluent-kafka consumer reading ``count`` records of ``topics`` in
    batches of 5,000 and validating each (stream.records), the same work the worker's first hop does."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-client-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe(topics)
        seen, t0 = 0, None
        while seen < count:
            batch = consumer.consume(5000, timeout=1.0)
            if batch and t0 is None:
                t0 = time.perf_counter()
            for message in batch:
                if message.error() is None:
                    parse_metric_record(message.value(), message.key(), message.topic())
                    seen += 1
        return count / (time.perf_counter() - t0)
    finally:
        consumer.close()


def caught_up(bootstrap: str, group: str, topics: list[str]) -> bool:
    """Whether the consumer group has committed every partition of ``topics`` up to its end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        parts = [TopicPartition(t, p) for t in topics for p in metadata[t].partitions]
        for tp in consumer.committed(parts, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if max(tp.offset, low) < high:  # an empty partition has no committed offset
                return False
        return True
    finally:
        consumer.close()


def drop_topics(bootstrap: str, prefix: str, group: str) -> None:
    """Delete the run's topics (its own and the worker's internal ones) from the broker."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith((prefix, f"{group}-"))]
    for future in admin.delete_topics(names, operation_timeout=30).values() if names else []:
        future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="seasonal",
                        help="detector of the bench models (zscore: the stream layer's ceiling; demo: the demo DC-VAE)")
    parser.add_argument("--entities", type=int, default=50)
    parser.add_argument("--points", type=int, default=1200)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="records/s produced while the worker runs (live); 0 = produce all first (catch-up)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes in the consumer group")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    recs = records(args.entities, args.points)
    folder = model_dir(args.entities, args.detector)
    offline, scored, model_kb, window_kb = offline_rate(folder, recs, args.entities)

    prefix = f"bench-{time.strftime('%H%M%S')}."
    settings = Settings(kafka={"bootstrap": args.bootstrap, "topic_prefix": prefix})
    ensure_topics(settings, extra=tuple(f"metrics.bench-{e}" for e in range(args.entities)))
    producer = {"bootstrap.servers": args.bootstrap}
    # Each step of the data is STEP seconds long and carries one record per entity.
    speed = args.rate / args.entities * STEP
    group = f"bench-{prefix.rstrip('.')}"
    worker = WorkerProcess(["--bootstrap", args.bootstrap, "--prefix", prefix, "--model-dir", str(folder),
                            "--processes", str(args.processes)],
                           folder / "worker.log", {"OMNISTREAM_APP_ID": group,
                                                   "OMNISTREAM_DATA_DIR": str(folder / "state"),
                                                   "OMNISTREAM_TRUST_MODEL_FOLDER": "true"})  # models it just fitted
    try:
        if not args.rate:
            t0 = time.perf_counter()
            replay(recs, producer, prefix)
            produce = len(recs) / (time.perf_counter() - t0)
        worker.start()
        t0 = time.perf_counter()
        if args.rate:
            replay(recs, producer, prefix, speed=speed)
            produce = len(recs) / (time.perf_counter() - t0)
        produced = time.perf_counter()
        watched = [settings.topic(f"metrics.bench-{e}") for e in range(args.entities)]
        while not (caught_up(args.bootstrap, f"{group}-ingest", watched)
                   and caught_up(args.bootstrap, group, [settings.topic(POINTS)])):
            time.sleep(0.25)
            if time.perf_counter() - t0 > 900 or not worker.running():
                raise SystemExit(f"the worker did not get through the records: {worker.tail()}")
        done = time.perf_counter()
        client = client_rate(args.bootstrap, watched, len(recs))
    finally:
        worker.stop()
        shutil.rmtree(folder, ignore_errors=True)
        drop_topics(args.bootstrap, prefix, group)
    streamed = len(recs) / (done - t0)
    print(f"detector={args.detector} entities={args.entities} points/entity={args.points} records={len(recs)} "
          f"windows scored={scored} worker processes={args.processes}")
    print(f"produce ({'paced' if args.rate else 'replay'})        {produce:10.0f} records/s")
    print(f"in-process (no Kafka)   {offline:10.0f} records/s   (reference; one process, "
          f"memory per entity: model {model_kb:.0f} kB, window and state {window_kb:.0f} kB)")
    print(f"bare client consume     {client:10.0f} records/s   (confluent-kafka, batched, validated)")
    print(f"end to end via Kafka    {streamed:10.0f} records/s   ({streamed / offline:.2f}x of in-process, "
          f"{streamed / client:.2f}x of the bare client)")
    if args.rate:
        print(f"behind at the end       {done - produced:10.1f} s from the last record produced to all committed "
              "(about 3 s is Faust's commit interval)")


if __name__ == "__main__":
    main()
