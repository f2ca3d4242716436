"""Which source topic carries which format, and how its samples map onto omnistream's model:
the entity (one or several labels joined), an optional system, the metric name (the sample's
name and chosen labels), include/exclude rules, counters, quantiles and histogram buckets."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from omnistream.ingest.samples import Decoded, Kind, Sample
from omnistream.stream.records import MAX_ENTITY_LENGTH, MAX_METRIC_NAME_LENGTH

Format = Literal["omnistream", "telegraf_json", "influx_line", "prometheus_json", "otlp_proto", "otlp_json"]
DEFAULT_UNIT = {"telegraf_json": "s", "influx_line": "ns"}  # Telegraf's json_timestamp_units and line precision
PROMETHEUS_COUNTERS = ["*_total", "*_count", "*_sum", "*_bucket"]
PLACEMENTS_KEPT = 200_000  # series whose placement is remembered (entities x metrics); then forgotten at once
_UNSEEN = object()
UNSAFE = re.compile(r"[^\w.:/@+=-]")  # what a metric or entity name may not hold (stream.records.NAME)


class SourceSettings(BaseModel):
    """One source topic: its format and mapping. Points are assembled per ``step_seconds``."""

    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, description="the topic as the collector names it (no prefix is added)")
    format: Format = "omnistream"
    entity: list[str] = Field(["host"], min_length=1, description="labels whose values, joined by '/', name the "
                                                                   "entity (e.g. [host], [namespace, pod])")
    system: str | None = Field(None, description="label naming the entity's system (topology), if any")
    name_labels: list[str] = Field([], description="labels appended to the metric name as .label=value "
                                                   "(e.g. [cpu] keeps cpu0 and cpu1 apart)")
    include: list[str] = Field(["*"], description="glob patterns of the metric names kept")
    exclude: list[str] = Field([], description="glob patterns of the metric names dropped (after include)")
    counters: list[str] | None = Field(None, description="glob patterns of names that are cumulative counters, "
                                                         "for formats without types (default: Prometheus's "
                                                         "suffixes for prometheus_json, none for Telegraf)")
    quantiles: list[float] = Field([0.5, 0.9, 0.99], description="summary quantiles kept (others dropped)")
    histogram_buckets: bool = Field(False, description="keep every histogram bucket as a metric (else only "
                                                       "_count and _sum, and their _mean)")
    histogram_mean: bool = Field(True, description="add <name>_mean = rate(_sum) / rate(_count) to a point that "
                                                   "has both")
    name_template: str = Field("{measurement}_{field}", description="Telegraf: a field's metric name from "
                                                                    "{measurement} and {field}")
    timestamp_unit: Literal["s", "ms", "us", "ns"] | None = Field(None, description="Telegraf: "
                                                                  "json_timestamp_units (s) or line precision (ns)")
    step_seconds: float = Field(60.0, gt=0, description="one point per entity per step, on the epoch's grid")
    lateness_seconds: float = Field(30.0, ge=0, description="a step closes this long (in data time) after its end; "
                                                            "later samples are counted late and dropped")
    aggregate: Literal["last", "mean", "max", "min"] = Field("last", description="a gauge's value of a step from "
                                                                                 "its samples in the step")

    @model_validator(mode="after")
    def _defaults_of_the_format(self) -> SourceSettings:
        try:
            self.name_template.format(measurement="m", field="f")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"name_template may use {{measurement}} and {{field}} only: {exc}") from None
        if self.timestamp_unit is None:
            self.timestamp_unit = DEFAULT_UNIT.get(self.format, "s")
        if self.counters is None:
            self.counters = PROMETHEUS_COUNTERS if self.format == "prometheus_json" else []
        return self


@dataclass(frozen=True, slots=True)
class Mapped:
    """A sample placed: its entity, system and metric name."""

    entity: str
    system: str | None
    metric: str
    ts: float
    value: float
    kind: Kind
    start: float | None
    mean: tuple[str, str] | None = None  # (the <name>_mean metric, "sum" | "count") of a histogram's part


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class Mapping:
    """``SourceSettings`` applied to decoded samples."""

    def __init__(self, source: SourceSettings):
        self.source = source
        self.quantiles = {float(q) for q in source.quantiles}
        # Every label a placement reads: a sample's placement depends on these alone.
        self._read = (*source.entity, *([source.system] if source.system else []), *source.name_labels,
                      "quantile", "le")
        self._placed: dict[tuple, tuple | str | None] = {}

    def metric_name(self, sample: Sample) -> str | None:
        """The metric's name, or None when the rules drop it."""
        s = self.source
        labels = sample.labels
        if "quantile" in labels and float(labels["quantile"]) not in self.quantiles:
            return None
        if "le" in labels and not s.histogram_buckets:
            return None
        name = UNSAFE.sub("_", sample.name + self.label_suffix(labels))
        if not _matches(name, s.include) or _matches(name, s.exclude):
            return None
        return name

    def label_suffix(self, labels: dict[str, str]) -> str:
        return "".join(f".{k}={labels[k]}" for k in (*self.source.name_labels, "quantile", "le") if k in labels)

    def mean_part(self, sample: Sample) -> tuple[str, str] | None:
        """A histogram's or summary's ``_sum`` or ``_count``: the ``_mean`` metric it makes."""
        if not self.source.histogram_mean or "le" in sample.labels or "quantile" in sample.labels:
            return None
        for part in ("sum", "count"):
            if sample.name.endswith(f"_{part}"):
                base = sample.name[: -len(part) - 1]
                return UNSAFE.sub("_", f"{base}_mean{self.label_suffix(sample.labels)}"), part
        return None

    def place(self, sample: Sample) -> tuple | str | None:
        """(entity, system, metric, kind, mean) of a sample, an error line, or None when the
        rules drop it; the same for every sample of one series (see ``apply``)."""
        s = self.source
        values = [sample.labels.get(label) for label in s.entity]
        if any(v is None or v == "" for v in values):
            return (f"{sample.name}: no entity label ({', '.join(s.entity)}) among "
                    f"{', '.join(sorted(sample.labels)) or 'no labels'}")
        metric = self.metric_name(sample)
        if metric is None:
            return None
        kind = "counter" if sample.kind == "counter" or _matches(sample.name, s.counters) else "gauge"
        system = sample.labels.get(s.system) if s.system else None
        entity = UNSAFE.sub("_", "/".join(values))
        if len(entity) > MAX_ENTITY_LENGTH or len(metric) > MAX_METRIC_NAME_LENGTH:
            return (f"{sample.name}: entity {entity[:40]!r} or metric {metric[:40]!r} is too long "
                    f"({MAX_ENTITY_LENGTH} and {MAX_METRIC_NAME_LENGTH} characters at most)")
        return entity, UNSAFE.sub("_", system) if system else None, metric, kind, self.mean_part(sample)

    def apply(self, decoded: Decoded) -> tuple[list[Mapped], list[str]]:
        """Mapped samples and the errors of the message (the decoder's and the mapping's).
        Placements are remembered per series (name, kind and the labels the rules read), so
        the rules run once per series rather than once per sample."""
        out, errors, cache, read = [], list(decoded.errors), self._placed, self._read
        for sample in decoded.samples:
            labels = sample.labels
            key = (sample.name, sample.kind, *[labels.get(k) for k in read])
            placed = cache.get(key, _UNSEEN)
            if placed is _UNSEEN:
                if len(cache) >= PLACEMENTS_KEPT:
                    cache.clear()
                placed = cache[key] = self.place(sample)
            if placed is None:
                continue
            if isinstance(placed, str):
                errors.append(placed)
                continue
            entity, system, metric, kind, mean = placed
            out.append(Mapped(entity, system, metric, sample.ts, sample.value, kind, sample.start, mean))
        return out, errors
