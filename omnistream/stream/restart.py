"""`omnistream worker` runs its Faust worker in a child process and starts it again when it
crashes, so that the command outlives what the Kafka client cannot: aiokafka's group
coordinator can fail an assertion when a broker comes back after an outage (aio-libs/aiokafka
#796), and Faust then stops the worker. A restart resumes from the committed offsets and the
window changelog, as after a kill, so nothing is lost and the deterministic events are not
changed.

The child dies with the parent (``PR_SET_PDEATHSIG``); SIGTERM and SIGINT are passed on for a
graceful stop. Restarts back off from 1 s to 30 s, and start at 1 s again after a minute of
health.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

RESTARTS_ENV = "OMNISTREAM_WORKER_RESTARTS"  # set in the child: how many restarts came before it
FIRST_WAIT, MAX_WAIT, HEALTHY_AFTER = 1.0, 30.0, 60.0
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: a SIGKILL of the parent (a crash) kills the child too."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] [{os.getpid()}] [WARNING] omnistream.stream.restart: {message}", file=sys.stderr, flush=True)


def exit_code(child: subprocess.Popen) -> int:
    """Wait for ``child`` and return its exit code, the shell's 128 + n if signal n killed it. A
    Ctrl-C meanwhile is not an error here: the signal handler has passed it on to the child."""
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:
            continue
    return 128 - code if code < 0 else code


def is_child() -> bool:
    return RESTARTS_ENV in os.environ


def run_restarting(argv: Sequence[str]) -> int:
    """Run ``argv`` (the worker command itself) until it exits by itself or is told to stop;
    return its exit code. Code 2 (bad settings, or credentials the broker refused) is not
    retried: that needs a person, not a restart. Any other failure is, a broker out of reach at
    start (code 75) included."""
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    restarts, wait = 0, FIRST_WAIT
    while True:
        started = time.monotonic()
        child = subprocess.Popen(list(argv), env={**os.environ, RESTARTS_ENV: str(restarts)},
                                 preexec_fn=die_with_parent)
        if stopping:  # told to stop while the child was being started: the handler missed it
            child.send_signal(stopping[0])
        code = exit_code(child)
        ran = time.monotonic() - started
        if stopping or code in (0, 2):
            return code
        if ran > HEALTHY_AFTER:
            wait = FIRST_WAIT
        restarts += 1
        _say(f"worker process exited with code {code} after {ran:.0f} s; starting it again in {wait:.0f} s "
             f"(restart {restarts}): it resumes from its committed offsets and changelog")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not stopping:
            time.sleep(0.1)
        if stopping:
            return 128 + stopping[0]
        wait = min(wait * 2, MAX_WAIT)
