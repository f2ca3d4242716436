"""`omnistream demo`: a local broker, bundled ASD data, a worker and anomaly events printed live.

Bundled (deploy/demo/): the first test points of three ASD servers, and DC-VAE models that
`omnistream fit` trained on those servers' train split. Everything the demo starts, it stops.
The broker is the local one of deploy/kafka on $OMNISTREAM_KAFKA_PORT (9092 by default).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import threading
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer
from rich.console import Console

from omnistream.cli.checkout import checkout_file
from omnistream.stream.config import load_settings
from omnistream.cli.replay import replay
from omnistream.stream.supervise import WorkerProcess
from omnistream.stream.topics import client_config, ensure_topics

IDLE_SECONDS = 15.0  # quiet time after the replay (no event, no dead letter) that ends the demo
BAD_RECORDS = [b"{\"entity\": \"omi-2\", \"ts\": ",
               orjson.dumps({"entity": "omi-3", "ts": "noon", "metrics": {"m00": 1}})]


def _records(limit: int) -> list[dict]:
    with gzip.open(checkout_file("deploy", "demo", "asd-demo.jsonl.gz"), "rb") as f:
        records = [orjson.loads(line) for line in f]
    per_entity: dict[str, int] = {}
    kept = []
    for r in records:
        per_entity[r["entity"]] = per_entity.get(r["entity"], 0) + 1
        if per_entity[r["entity"]] <= limit:
            kept.append(r)
    return kept


def _broker(action: str) -> int:
    return subprocess.call([str(checkout_file("deploy", "kafka", "broker.sh")), action], stdout=subprocess.DEVNULL)


def _print_event(console: Console, event: dict) -> None:
    colour = {"open": "bold red", "ongoing": "yellow", "resolved": "green"}[event["state"]]
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(event["ts"]))
    top = ", ".join(f"{m['metric']} {m['contribution']:.0%}" for m in event["top_metrics"])
    console.print(f"[{colour}]{event['state']:>8}[/] {event['entity']:<6} {when}  calibrated score "
                  f"{event['calibrated_score']:6.2f} (> 1 is anomalous)  top: {top}", soft_wrap=True)


def run_demo(speed: float, limit: int, console: Console) -> int:
    started_broker = _broker("status") != 0
    if started_broker:
        console.print("[bold]starting the local Kafka broker[/] (first run fetches the jars from Maven Central)")
        if subprocess.call([str(checkout_file("deploy", "kafka", "broker.sh")), "start"]) != 0:
            console.print("[red]the broker did not start[/]")
            return 1
    run_id = time.strftime("%Y%m%d%H%M%S")
    prefix = f"demo-{run_id}."
    bootstrap = f"127.0.0.1:{os.environ.get('OMNISTREAM_KAFKA_PORT', '9092')}"  # the port broker.sh uses
    settings = load_settings(environ={}, kafka={"topic_prefix": prefix, "bootstrap": bootstrap})
    records = _records(limit)
    entities = sorted({r["entity"] for r in records})
    ensure_topics(settings, extra=tuple(f"metrics.{e}" for e in entities))
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"omnistream-demo-{run_id}.log"
    worker = WorkerProcess(["--bootstrap", bootstrap, "--prefix", prefix,
                            "--model-dir", str(checkout_file("deploy", "demo", "models")),
                            "--allowlist", str(checkout_file("deploy", "demo", "models.sha256"))],
                           log_path, {"OMNISTREAM_APP_ID": f"omnistream-demo-{run_id}",
                                      "OMNISTREAM_DATA_DIR": str(log_path.with_suffix(".state"))})
    console.print(f"[bold]starting the worker[/] (log: {log_path})")
    try:
        worker.start()
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        if started_broker:
            _broker("stop")
        return 1
    consumer = Consumer({**client_config(settings), "group.id": f"demo-viewer-{run_id}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.topic("anomalies"), settings.topic("metrics-dlq")])
    counts = {"open": 0, "ongoing": 0, "resolved": 0, "dlq": 0}
    try:
        console.print(f"[bold]replaying[/] {len(records)} ASD points of {', '.join(entities)} at {speed:g}x "
                      f"plus {len(BAD_RECORDS)} malformed records; events appear as they are detected:")
        t0 = time.perf_counter()
        produced_at: list[float] = []  # set by the producing thread when it is done

        def produce() -> None:
            replay(records, client_config(settings), prefix, True, speed)
            replay(BAD_RECORDS, client_config(settings), prefix)
            produced_at.append(time.monotonic())

        threading.Thread(target=produce, daemon=True).start()
        last_message = 0.0
        while worker.running():
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                last_message = time.monotonic()
                if msg.topic().endswith("metrics-dlq"):
                    counts["dlq"] += 1
                    error = dict(msg.headers() or [])["error"].decode()
                    console.print(f"[magenta]     dlq[/] {msg.value()[:40]!r}: {error}", soft_wrap=True)
                else:
                    event = orjson.loads(msg.value())
                    counts[event["state"]] += 1
                    _print_event(console, event)
            if produced_at and time.monotonic() - max(produced_at[0], last_message) > IDLE_SECONDS:
                break
        if not worker.running():
            console.print(f"[red]the worker stopped unexpectedly[/]; see {log_path}")
            return 1
        elapsed = time.perf_counter() - t0
        console.print(f"[bold]done[/]: {len(records)} points in {elapsed:.1f} s; events: {counts['open']} open, "
                      f"{counts['ongoing']} ongoing, {counts['resolved']} resolved; "
                      f"{counts['dlq']} records dead-lettered")
        return 0
    finally:
        consumer.close()
        worker.stop()
        if started_broker:
            _broker("stop")
            console.print("stopped the worker and the broker")
        else:
            console.print("stopped the worker (the broker was already running and stays up)")
