"""Logging that stays readable during an outage: a repeated warning is written once per
interval, with the count of the ones held back."""

from __future__ import annotations

import logging
import time


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
