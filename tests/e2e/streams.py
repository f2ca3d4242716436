"""Helpers of the end-to-end tests: the real worker command, and reading a topic back."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer

from omnistream.detectors.export import sha256_file
from omnistream.stream.supervise import WorkerProcess


REPO = Path(__file__).resolve().parents[2]
BROKER = REPO / "deploy" / "kafka" / "broker.sh"
PORT, CONTROLLER_PORT = 19092, 19093


def broker_env() -> dict[str, str]:
    """The environment under which deploy/ (and `omnistream demo`) use the test broker."""
    return {**os.environ, "OMNISTREAM_KAFKA_PORT": str(PORT), "OMNISTREAM_KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT)}


def trust(model_dir: Path, allowlist: Path) -> Path:
    """What an operator does before starting a worker: list the sha256 of the model files it
    may load (as ``sha256sum model_dir/*.pt`` would)."""
    allowlist.parent.mkdir(parents=True, exist_ok=True)
    allowlist.write_text("".join(f"{sha256_file(p)}  {p.name}\n" for p in sorted(Path(model_dir).glob("*.pt"))))
    return allowlist


def start_worker(bootstrap, prefix, model_dir, tmp: Path, metrics_port: int = 0,
                 env: dict[str, str] | None = None, app_id: bool = True, processes: int = 1) -> WorkerProcess:
    """The worker command on ``prefix``; ``app_id``: a test's own app id (else the default one
    of the prefix's deployment)."""
    allowlist = trust(model_dir, tmp / "trusted.sha256")
    args = ["--bootstrap", bootstrap, "--prefix", prefix, "--model-dir", str(model_dir),
            "--metrics-port", str(metrics_port), "--allowlist", str(allowlist), "--processes", str(processes)]
    env = {**({"OMNISTREAM_APP_ID": f"app-{prefix.rstrip('.')}"} if app_id else {}),
           "OMNISTREAM_DATA_DIR": str(tmp / "state"), "OMNISTREAM_KAFKA__DISCOVER_EVERY": "3", **(env or {})}
    return WorkerProcess(args, tmp / "worker.log", env)


def stopped_by_sigterm(proc: subprocess.Popen, limit: float) -> tuple[int, float]:
    """Send SIGTERM to ``proc`` while the broker is down; (exit code, seconds until it ended)."""
    subprocess.run([str(BROKER), "stop"], check=True, env=broker_env(), timeout=300)
    try:
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(limit + 60)
        return code, time.monotonic() - began
    finally:
        subprocess.run([str(BROKER), "start"], check=True, env=broker_env(), timeout=300)


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
