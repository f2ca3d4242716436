"""The ingest hop in a process of its own, beside the worker's scoring process.

Why a process: validating and packing records and scoring windows are both Python work, and in
one process they share one GIL, so the hop slowed scoring by about as much as it cost
(bench/e2e.py: the processor ran at a third of its own speed while the hop caught up). The hop
keeps no state but its consumer group's offsets (stream.ingest_consumer), so it runs apart at
no cost to correctness and takes a core of its own.

- The worker starts it (``IngestProcess``) once its tables are recovered and writes it the
  worker's settings as JSON on its stdin (not its environment: they may hold credentials). It
  dies with the worker (SIGKILL on the parent's death); a signal to the worker stops it after
  the batch in hand.
- Its status reaches the worker as JSON lines on its stdout, twice a second: the partitions it
  holds (for the lag and stall watch, stream.guards) and the totals of its counters (records
  in, dead letters by reason, broker errors), which the worker adds to its own /metrics.
- If it ends by itself, the worker ends with the same exit code (stream.shutdown), and the
  command restarts both: each resumes from its own committed offsets.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import IO

import orjson
from prometheus_client import Counter

from omnistream.stream import telemetry
from omnistream.stream.config import Settings
from omnistream.stream.ingest import Ingest
from omnistream.stream.ingest_consumer import FAILED_EXIT, IngestConsumer
from omnistream.stream.logs import make_readable
from omnistream.stream.restart import die_with_parent, exit_code
from omnistream.stream.shutdown import end_process

log = logging.getLogger(__name__)
LOGLEVEL_ENV = "OMNISTREAM_INGEST_LOGLEVEL"
STATUS_EVERY = 0.5  # seconds between status lines
SHIPPED: tuple[Counter, ...] = (telemetry.RECORDS_IN, telemetry.RECORDS_DLQ, telemetry.BROKER_ERRORS)


def counter_totals(counters: tuple[Counter, ...] = SHIPPED) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The totals of ``counters`` in this process: metric name -> [(labels, total)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for counter in counters:
        for family in counter.collect():
            out[family.name] = [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")]
    return out


class CounterShipper:
    """Adds to this process's counters what another process's totals grew by since the last look."""

    def __init__(self, counters: tuple[Counter, ...] = SHIPPED):
        self.by_name = {family.name: counter for counter in counters for family in counter.collect()}
        self.seen: dict[tuple[str, tuple], float] = {}

    def apply(self, totals: dict[str, list]) -> None:
        for name, samples in totals.items():
            counter = self.by_name.get(name)
            if counter is None:
                continue
            for labels, total in samples:
                key = (name, tuple(sorted(labels.items())))
                grew = total - self.seen.get(key, 0.0)
                self.seen[key] = total
                if grew > 0:
                    (counter.labels(**labels) if labels else counter).inc(grew)


class IngestProcess:
    """The worker's handle on the ingest process: start, status, stop."""

    def __init__(self, settings: Settings, loglevel: str = "INFO"):
        self.settings, self.loglevel = settings, loglevel
        self.assignment: set[tuple[str, int]] = set()  # read by the lag report (a copy, replaced whole)
        self.child: subprocess.Popen | None = None
        self.shipper = CounterShipper()
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._read, name="ingest-status", daemon=True)

    def start(self) -> None:
        self.child = subprocess.Popen([sys.executable, "-m", "omnistream.stream.ingest_process"],
                                      env={**os.environ, LOGLEVEL_ENV: self.loglevel}, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, preexec_fn=die_with_parent)
        assert self.child.stdin is not None
        self.child.stdin.write(self.settings.model_dump_json().encode())
        self.child.stdin.close()
        self._reader.start()

    def request_stop(self) -> None:
        """The process stops after the batch in hand (delivered and committed), or gives it up
        uncommitted if the broker cannot take it."""
        self._stopping.set()
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def stop(self, timeout: float) -> bool:
        """``request_stop`` and wait; whether the process ended in time."""
        self.request_stop()
        if self.child is None:  # never started (the worker stopped during table recovery)
            return True
        try:
            self.child.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _read(self) -> None:
        assert self.child is not None and self.child.stdout is not None
        for line in self.child.stdout:
            try:
                status = orjson.loads(line)
                self.assignment = {(topic, partition) for topic, partition in status["assignment"]}
                self.shipper.apply(status["counters"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("ingest process: unreadable status line (%s): %r", exc, line[:200])
        code = exit_code(self.child)  # a signal's death as the shell's 128 + n
        if not self._stopping.is_set():
            end_process(code or FAILED_EXIT, log, "the ingest process ended (exit code %d): stopping the worker, "
                        "whose restart starts both again from their committed offsets", code)


def _write_status(out: IO[bytes], consumer: IngestConsumer) -> None:
    out.write(orjson.dumps({"assignment": sorted(consumer.assignment), "counters": counter_totals()}) + b"\n")
    out.flush()


def main() -> None:
    """The ingest process: the hop in its thread, status lines on stdout until it ends."""
    if os.getppid() == 1:  # the worker died before its die_with_parent (preexec_fn) took effect
        sys.exit(FAILED_EXIT)
    settings = Settings.model_validate_json(sys.stdin.buffer.read())
    logging.basicConfig(level=os.environ.get(LOGLEVEL_ENV, "INFO"), stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    make_readable(logging.getLogger().handlers, settings.log_format == "json")
    consumer = IngestConsumer(settings, Ingest(settings))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: consumer.request_stop())
    status = sys.stdout.buffer
    try:
        consumer.start()
        while not consumer.wait(STATUS_EVERY):
            _write_status(status, consumer)
        _write_status(status, consumer)
    except Exception:
        end_process(FAILED_EXIT, log, "the ingest process failed", exc_info=True)


if __name__ == "__main__":
    main()
