"""Helpers of the end-to-end tests: the real worker command, and reading a topic back."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer

from omnistream.stream.supervise import WorkerProcess


def start_worker(bootstrap, prefix, model_dir, tmp: Path, metrics_port: int = 0,
                 env: dict[str, str] | None = None) -> WorkerProcess:
    args = ["--bootstrap", bootstrap, "--prefix", prefix, "--model-dir", str(model_dir),
            "--metrics-port", str(metrics_port)]
    env = {"OMNISTREAM_APP_ID": f"app-{prefix.rstrip('.')}", "OMNISTREAM_DATA_DIR": str(tmp / "state"),
           "OMNISTREAM_KAFKA__DISCOVER_EVERY": "3", **(env or {})}
    return WorkerProcess(args, tmp / "worker.log", env)


def consume(bootstrap, topic, until, timeout=180.0, security: dict[str, str] | None = None):
    """Messages of ``topic`` from the start until ``until(messages)`` holds or time runs out;
    ``security``: librdkafka settings for a broker that wants credentials."""
    consumer = Consumer({"bootstrap.servers": bootstrap, **(security or {}), "group.id": f"check-{time.time_ns()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    messages, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline and not until(messages):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                messages.append(msg)
    finally:
        consumer.close()
    return messages
