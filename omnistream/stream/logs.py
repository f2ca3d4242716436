"""Logging that stays readable during an outage: a repeated warning is written once per
interval, with the count of the ones held back."""

from __future__ import annotations

import logging
import re
import threading
import time

DIGITS = re.compile(r"\d+")


def use_json(handlers: list[logging.Handler]) -> None:
    """One JSON object per line on ``handlers`` (time, level, logger name, message), for log
    collectors that parse fields (python-json-logger)."""
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                              rename_fields={"asctime": "time", "levelname": "level", "name": "logger",
                                             "process": "pid"})
    for handler in handlers:
        handler.setFormatter(formatter)


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, every: float = 60.0, clock=time.monotonic):
        self.logger, self.every, self.clock = logger, every, clock
        self.last: float | None = None
        self.held = 0

    def warning(self, message: str, *args: object) -> bool:
        """Log now if the last one was ``every`` seconds ago (or never); else count it."""
        now = self.clock()
        if self.last is not None and now - self.last < self.every:
            self.held += 1
            return False
        suffix = f" ({self.held} more like it held back)" if self.held else ""
        self.logger.warning(message + suffix, *args)
        self.last, self.held = now, 0
        return True

    def reset(self, message: str = "recovered") -> None:
        """The condition is over (say so, once): the next warning is written at once."""
        if self.last is not None:
            self.logger.info(message + (f" ({self.held} warnings held back)" if self.held else ""))
        self.last, self.held = None, 0


class RepeatFilter(logging.Filter):
    """Lets a warning or error through once per ``every`` seconds when it repeats word for word,
    numbers aside (a client library retrying an absent broker writes thousands a second, each
    with its own millisecond count), noting how many were held back. Distinct messages all
    pass; so do records below WARNING. One instance serves all handlers: a record is judged
    once, and every handler gets the same verdict."""

    def __init__(self, every: float = 60.0, clock=time.monotonic, remember: int = 1000):
        super().__init__()
        self.every, self.clock, self.remember = every, clock, remember
        self.seen: dict[tuple[str, int, str], list] = {}  # key -> [last written, held since]
        self._lock = threading.Lock()  # records come from many threads

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_omnistream_repeat", None)
        if verdict is None:
            with self._lock:
                verdict = self._judge(record)
            record._omnistream_repeat = verdict
        return verdict

    def _judge(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, DIGITS.sub("#", record.getMessage()))
        now = self.clock()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.every:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg, record.args = f"{record.getMessage()} ({entry[1]} more like it held back)", ()
        if len(self.seen) >= self.remember:
            self.seen = {k: v for k, v in self.seen.items() if now - v[0] < self.every}
            if len(self.seen) >= self.remember:  # all recent: start afresh rather than grow
                self.seen.clear()
        self.seen[key] = [now, 0]
        return True


def make_readable(handlers: list[logging.Handler], json_lines: bool) -> None:
    """What every worker process does to its log handlers: JSON lines if asked (``use_json``),
    and repeated warnings thinned by one shared ``RepeatFilter``."""
    if json_lines:
        use_json(handlers)
    repeats = RepeatFilter()
    for handler in handlers:
        handler.addFilter(repeats)
