"""What every input format decodes to: samples, one metric value of one label set at one time.

A sample is a collector's unit (one Telegraf field, one Prometheus sample, one OTLP data
point), before it is known which entity it belongs to (mapping) or which step it falls in
(assemble). Its ``kind`` says how it turns into a point value: a ``gauge`` is a level, taken
as is; a ``counter`` is cumulative and becomes a rate between steps, with resets detected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["gauge", "counter"]
EARLIEST_TS = 946_684_800.0  # 2000-01-01: a timestamp before it is in the wrong unit, not old data


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    ts: float  # epoch seconds
    value: float  # NaN: missing (e.g. a Prometheus staleness marker)
    kind: Kind = "gauge"
    start: float | None = None  # a counter's series start (OTLP start_time): a new start is a reset


@dataclass
class Decoded:
    """The samples of one message and what was refused in it (one line per refused sample)."""

    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, sample: Sample, max_ts: float) -> None:
        """Keep ``sample`` if its value and time are usable, else say why."""
        if math.isinf(sample.value):
            self.errors.append(f"{sample.name}: value {sample.value} is infinite")
        elif not EARLIEST_TS <= sample.ts <= max_ts:
            self.errors.append(f"{sample.name}: timestamp {sample.ts:.6g} s is outside {EARLIEST_TS:.0f}.."
                               f"{max_ts:.0f} (2000 to the clock plus records.max_future_seconds): wrong unit?")
        else:
            self.samples.append(sample)


class FormatError(ValueError):
    """A message that cannot be decoded at all; the message says why, for the DLQ header."""
