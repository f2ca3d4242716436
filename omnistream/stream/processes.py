"""`omnistream worker --processes N`: N workers of one consumer group on this machine.

Scale-out is Kafka's own: every worker process joins the group of the deployment's app id, and
the group coordinator deals the partitions of the metric topics, the points topic and the
tables' changelogs among them (an entity's windows live where its points partition is). So N
processes here and M on other machines are the same thing: N + M members of one group, and at
most ``kafka.partitions`` of them get work on the points topic.

Each process is the worker command itself, restarting on its own (stream.restart), with its own
state folder (``data_dir/process-<i>``) and, when ``metrics_port`` is set, its own Prometheus
port (``metrics_port + i``). SIGTERM and SIGINT reach every process; when one ends for good
(told to stop, or a setting a restart cannot mend) the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from omnistream.stream.restart import die_with_parent, exit_code

PROCESS_ENV = "OMNISTREAM_WORKER_PROCESS"  # set in each process: its index, 0..N-1


def process_index() -> int | None:
    """This worker's index among ``--processes N``; None when it runs alone."""
    value = os.environ.get(PROCESS_ENV)
    return int(value) if value is not None else None


def state_folder(data_dir: Path, index: int | None) -> Path:
    return data_dir if index is None else data_dir / f"process-{index}"


def metrics_port_of(port: int, index: int | None) -> int:
    return port + index if port and index is not None else port


def run_processes(argv: Sequence[str], count: int, poll: float = 0.2) -> int:
    """Run ``count`` copies of ``argv`` (the worker command), each told its index; return the
    highest exit code once all have ended."""
    stopping: list[int] = []
    children: list[subprocess.Popen] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    for index in range(count):
        if stopping:  # told to stop while they were being started: start no more
            break
        children.append(subprocess.Popen(list(argv), env={**os.environ, PROCESS_ENV: str(index)},
                                         preexec_fn=die_with_parent))
    if stopping:  # told to stop while they were being started
        forward(stopping[0], None)
    while all(child.poll() is None for child in children):
        time.sleep(poll)
    if not stopping:  # one ended for good: the group should not go on short of it without anyone noticing
        forward(signal.SIGTERM, None)
    return max(exit_code(child) for child in children)
