"""Soak: many distinct entity names through the real worker, and its memory as they come.

Waves of new entity names (none with a model: each asks for a transfer and keeps a window)
are produced to the shared metrics topic, each wave an hour of data time after the last, in
small slices so that the worker sees many batches. With ``window.idle_seconds`` at an hour, an
entity idle for longer leaves memory (and its state the changelog). After each wave the worker's
resident memory (VmRSS) and the entities it holds are read; memory should level off once the
first entities expire, not grow with the names seen.

    python bench/soak.py [--names 50000] [--waves 20] [--bootstrap 127.0.0.1:9092]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from confluent_kafka import Producer
from timing import resident_mb

from omnistream.stream.config import Settings
from omnistream.stream.supervise import WorkerProcess
from omnistream.stream.topics import BrokerProbe, ensure_topics

POINTS = 4  # per entity name, a minute apart
METRICS_PORT = 19130


def gauge(name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).read().decode()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def wave_records(wave: int, per_wave: int) -> list[bytes]:
    start = 1_700_000_000.0 + 3600 * wave
    return [orjson.dumps({"entity": f"soak-{wave * per_wave + i:06d}", "ts": start + 60 * j,
                          "metrics": {"cpu": (i % 97) / 97, "mem": (j + i % 13) / 17}})
            for j in range(POINTS) for i in range(per_wave)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=50_000)
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--slice", type=int, default=500, help="records per slice; slices 0.2 s apart")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    per_wave = args.names // args.waves
    prefix = f"soak-{time.strftime('%H%M%S')}."
    group = f"soak-{prefix.rstrip('.')}"
    settings = Settings(kafka={"bootstrap": args.bootstrap, "topic_prefix": prefix})
    ensure_topics(settings)
    folder = Path(tempfile.mkdtemp(prefix="omnistream-soak-"))
    (folder / "models").mkdir()
    worker = WorkerProcess(["--bootstrap", args.bootstrap, "--prefix", prefix, "--model-dir", str(folder / "models"),
                            "--metrics-port", str(METRICS_PORT), "--no-restart"], folder / "worker.log",
                           {"OMNISTREAM_APP_ID": group, "OMNISTREAM_DATA_DIR": str(folder / "state"),
                            "OMNISTREAM_WINDOW__IDLE_SECONDS": "3600"})
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 20})
    probe = BrokerProbe({"bootstrap.servers": args.bootstrap}, settings.topic("metrics"))
    worker.start()
    print(f"worker pid {worker.proc.pid}: {resident_mb(worker.proc.pid):.0f} MB at start; log {worker.log_path}")
    print(f"{'wave':>4} {'names seen':>10} {'in memory':>9} {'RSS MB':>7} {'s':>5}")
    try:
        for wave in range(args.waves):
            t0 = time.monotonic()
            values = wave_records(wave, per_wave)
            for start in range(0, len(values), args.slice):
                for value in values[start:start + args.slice]:
                    producer.produce(settings.topic("metrics"), value=value)
                producer.poll(0)
                time.sleep(0.2)
            producer.flush(60)
            time.sleep(6)  # Faust commits every few seconds
            while probe.backlog(group) > 0:
                time.sleep(1)
            print(f"{wave + 1:>4} {(wave + 1) * per_wave:>10} {gauge('omnistream_entities_in_memory'):>9.0f} "
                  f"{resident_mb(worker.proc.pid):>7.0f} {time.monotonic() - t0:>5.0f}", flush=True)
    finally:
        worker.stop()


if __name__ == "__main__":
    main()
