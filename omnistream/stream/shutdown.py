"""A stop that ends in bounded time: after SIGTERM the process gets ``shutdown_seconds`` to
stop cleanly (flush, commit, leave the group), then ends anyway and says what was left.

With the broker unreachable, a clean stop cannot finish: the Kafka clients wait for it
(Faust's consumer thread for a minute, librdkafka's close for the group session), longer than
an orchestrator's grace period (Kubernetes: 30 s) before its SIGKILL. Ending without the
last commit loses nothing: delivery is at-least-once, the next start re-reads from the last
committed offsets and the changelog, and event ids are deterministic.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import NoReturn

log = logging.getLogger(__name__)
UNDELIVERED_EXIT = 3  # a message the broker did not take: the restart redoes the batch from the last commit


def end_process(code: int, logger: logging.Logger, message: str, *args: object, exc_info: bool = False) -> NoReturn:
    """Log ``message`` as critical, flush the logs and end the process at once with ``code``: no
    clean-up, as in a crash; what was not committed is read again when it starts again."""
    logger.critical(message, *args, exc_info=exc_info)
    logging.shutdown()
    os._exit(code)


def end_after(seconds: float, left: Callable[[], str], code: int = 0) -> threading.Thread:
    """Start a daemon thread that ends the process ``seconds`` from now unless it has ended;
    ``left()`` says, at that moment, what the clean stop had not finished."""
    began = time.monotonic()

    def watch() -> None:
        time.sleep(seconds)
        try:
            detail = left()
        except Exception as exc:  # the process must end whatever the description does
            detail = f"(cannot say: {exc!r})"
        end_process(code, log, "clean stop not finished %.0f s after the signal: %s. Ending now; what was not "
                    "committed is read again on the next start", time.monotonic() - began, detail)

    thread = threading.Thread(target=watch, name="shutdown-deadline", daemon=True)
    thread.start()
    return thread


def stop_on_signals(seconds: float, left: Callable[[], str]) -> threading.Event:
    """An event set by SIGTERM or SIGINT, for a service's loop to watch; the first signal also
    starts ``end_after(seconds, left)``, so the process ends even if the loop does not return."""
    stop = threading.Event()

    def stopping(*_: object) -> None:
        if not stop.is_set():
            end_after(seconds, left)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopping)
    return stop
