"""Every message omnistream reads or writes, as pydantic models: validated at the edge, and
the source of the JSON Schema files that consumers use (``omnistream schemas``)."""

from __future__ import annotations

import hashlib
import math
import re
import time
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_ENTITY_LENGTH = 200
MAX_METRIC_NAME_LENGTH = 200
MAX_METRICS_PER_RECORD = 1000  # more would make one entity's window state too large to persist
MAX_VALUE = 3.4028234663852886e38  # float32's largest: the models compute in float32
# Entity and metric names: letters and digits of any script, and . _ : / @ + = -; no spaces,
# control, zero-width or bidirectional-override characters (they hide what a name says).
NAME = re.compile(r"^[\w.:/@+=-]+$")
# Metric names already found valid: a fleet repeats a few hundred, and the check costs more than
# the rest of a record's validation. Emptied when it holds this many (names from bad input).
VALID_NAMES_HELD = 100_000
_valid_names: set[str] = set()


class RecordError(ValueError):
    """A metric record that cannot be used; the message says why, for the DLQ header."""

    @property
    def field(self) -> str:
        """What was wrong, from a small fixed set (a Prometheus label must not take record data)."""
        head = str(self).split(":", 1)[0].split(".", 1)[0].strip()
        return head if head in ("entity", "ts", "metrics", "size") else "record"


class MetricRecord(BaseModel):
    """`metrics.<entity>` / `metrics` value. NaN or null metric values mean missing."""

    model_config = ConfigDict(strict=True, extra="ignore")

    entity: str | None = Field(None, min_length=1, max_length=MAX_ENTITY_LENGTH)
    ts: float = Field(description="epoch seconds")
    metrics: dict[str, float | None] = Field(min_length=1, max_length=MAX_METRICS_PER_RECORD)

    @field_validator("ts")
    @classmethod
    def _finite_positive(cls, ts: float) -> float:
        if not math.isfinite(ts) or ts <= 0:
            raise ValueError("must be a finite, positive number of epoch seconds")
        return ts

    @field_validator("metrics")
    @classmethod
    def _names_and_values(cls, metrics: dict[str, float | None]) -> dict[str, float | None]:
        for name in metrics.keys() - _valid_names:
            if len(name) > MAX_METRIC_NAME_LENGTH or not NAME.match(name):
                raise ValueError(f"metric name {name[:40]!r} is not 1-{MAX_METRIC_NAME_LENGTH} letters, digits "
                                 "and . _ : / @ + = -")
            if len(_valid_names) >= VALID_NAMES_HELD:
                _valid_names.clear()
            _valid_names.add(name)
        for name, value in metrics.items():
            if value is not None and abs(value) > MAX_VALUE:  # infinities too; NaN (missing) compares False
                raise ValueError(f"metric {name!r} is infinite (use null or NaN for missing)" if math.isinf(value)
                                 else f"metric {name!r} is beyond the float32 range the models compute in")
        return metrics


class ModelRef(BaseModel):
    name: str
    version: str
    cluster: str | None = None
    strategy: str | None = None  # scratch | base (a cluster's model, until the entity's own) | full | partial | refit


class MetricContribution(BaseModel):
    metric: str
    contribution: float


class RelatedEntity(BaseModel):
    """An entity of a system incident, by how anomalous it looks: a root-cause candidate."""

    entity: str
    calibrated_score: float  # its own score against its own typical level and threshold: > 1 is anomalous
    top_metrics: list[MetricContribution] = Field(default_factory=list)


class AnomalyEvent(BaseModel):
    """`anomalies` value: one state change (or reminder) of an entity's incident."""

    event_id: str
    entity: str
    system: str | None = None
    state: Literal["open", "ongoing", "resolved", "shift"]  # shift: the level moved for good (ends an incident)
    ts: float
    window: tuple[float, float]
    score: float
    threshold: float
    calibrated_score: float  # (score - typical) / (threshold - typical): > 1 is anomalous
    model: ModelRef
    top_metrics: list[MetricContribution]
    # A system incident's entities, most anomalous first.
    related_entities: list[RelatedEntity] = Field(default_factory=list)


class ScoreRecord(BaseModel):
    """`scores` value: every scored window, for dashboards."""

    entity: str
    ts: float
    score: float
    threshold: float
    calibrated_score: float  # (score - typical) / (threshold - typical): > 1 is anomalous
    top_metrics: list[MetricContribution] = Field(default_factory=list)  # of a flagged window only


class DataRange(BaseModel):
    topic: str
    from_ts: float
    to_ts: float


class TransferRequest(BaseModel):
    """`transfer-requests` value: an entity needs a (new) model."""

    request_id: str
    entity: str
    reason: Literal["new_entity", "drift", "schedule"]
    cluster: str | None = None
    distance: float | None = None
    diff_score: float | None = None
    strategy: Literal["full", "partial"] | None = None
    data: DataRange
    ts: float


class ModelAnnouncement(BaseModel):
    """`models` value (compacted, keyed by entity): a model file a scorer loads only if its
    sha256 matches."""

    name: str
    version: str
    uri: str  # path of the model file, as the workers see the model store
    sha256: str
    entity: str | None = None
    cluster: str | None = None
    strategy: str
    diff_score: float | None = None
    base_sha256: str | None = None
    metrics: dict = {}
    ts: float


class TransferStatus(BaseModel):
    """`transfer-status` value (compacted, keyed by entity): where the entity's request stands."""

    entity: str
    request_id: str
    reason: str
    state: Literal["waiting", "cold_start", "training", "done", "failed"]
    detail: str
    points: int = 0
    attempts: int = 0
    ts: float


MAX_TOPOLOGY_NODES = 100_000  # a message beyond this is refused; the worker sets its own, lower limit


class Topology(BaseModel):
    """`topology` value (compacted, keyed by system): a system's services and who calls whom.
    Edges are directed, caller -> callee, with a positive weight (call rate, or 1). Cycles are
    ordinary in call graphs and allowed; self-loops and repeated edges are allowed here and
    reported by ``remarks`` (a model adds every node's own loop itself)."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(min_length=1, max_length=MAX_ENTITY_LENGTH, pattern=NAME.pattern)
    version: str = Field(min_length=1, max_length=200)
    valid_from: float = Field(description="epoch seconds from which this graph describes the system")
    ts: float = Field(description="epoch seconds it was published")
    nodes: list[str] = Field(min_length=1, max_length=MAX_TOPOLOGY_NODES)
    edges: list[tuple[str, str, float]] = []
    attributes: dict[str, dict[str, str | list[str]]] = Field(
        {}, description="per node, e.g. {'host': '10.0.0.7'}; a node on several hosts lists them")

    @field_validator("nodes")
    @classmethod
    def _unique_names(cls, nodes: list[str]) -> list[str]:
        bad = next((n for n in nodes if len(n) > MAX_ENTITY_LENGTH or not NAME.match(n)), None)
        if bad is not None:
            raise ValueError(f"node name {bad[:40]!r} is not 1-{MAX_ENTITY_LENGTH} letters, digits and . _ : / @ + = -")
        if len(set(nodes)) != len(nodes):
            raise ValueError("nodes are listed more than once")
        return nodes

    @model_validator(mode="after")
    def _edges_between_nodes(self) -> Topology:
        known = set(self.nodes)
        for source, target, weight in self.edges:
            if source not in known or target not in known:
                raise ValueError(f"edge {source} -> {target} names a node that is not in nodes")
            if not math.isfinite(weight) or weight <= 0:
                raise ValueError(f"edge {source} -> {target} has weight {weight}: it must be finite and positive")
        unknown = sorted(set(self.attributes) - known)
        if unknown:
            raise ValueError(f"attributes of nodes not in nodes: {', '.join(unknown[:5])}")
        return self

    def remarks(self) -> list[str]:
        """What is allowed but worth a log line: self-loops and edges given more than once."""
        out = []
        loops = sorted({s for s, t, _ in self.edges if s == t})
        if loops:
            out.append(f"self-loops ignored (every node keeps its own state anyway): {', '.join(loops[:5])}")
        pairs = [(s, t) for s, t, _ in self.edges]
        if len(set(pairs)) != len(pairs):
            out.append(f"{len(pairs) - len(set(pairs))} edges given more than once: their weights are summed")
        return out


OUTPUT_MODELS = {
    "metrics": MetricRecord,
    "anomalies": AnomalyEvent,
    "scores": ScoreRecord,
    "transfer-requests": TransferRequest,
    "models": ModelAnnouncement,
    "transfer-status": TransferStatus,
    "topology": Topology,
}


def entity_from_topic(topic: str, prefix: str = "") -> str | None:
    """`<prefix>metrics.<entity>` names its entity; the shared `<prefix>metrics` topic does not."""
    head = f"{prefix}metrics."
    if not topic.startswith(head):
        return None
    return topic[len(head):] or None


def parse_metric_record(value: bytes | None, key: bytes | None, topic: str, prefix: str = "",
                        max_future: float | None = None, now: float | None = None) -> MetricRecord:
    """Validate one raw record; the entity comes from the record, else the topic, else the key.

    ``max_future``: a ``ts`` more than this many seconds after ``now`` (default: the clock) is
    refused; one such point would make every later point of its entity look late.
    """
    if value is None:
        raise RecordError("empty record (tombstone)")
    try:
        record = MetricRecord.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise RecordError(f"{where}: {first['msg']}"
                          + (f" ({exc.error_count()} errors)" if exc.error_count() > 1 else "")) from None
    topic_entity = entity_from_topic(topic, prefix)
    key_entity = key.decode("utf-8", "replace") if key else None
    if record.entity is None:
        record.entity = topic_entity or key_entity
        if not record.entity:
            raise RecordError("entity: missing (not in the record, the topic name or the key)")
    elif topic_entity is not None and record.entity != topic_entity:
        raise RecordError(f"entity: record says {record.entity!r} but topic {topic!r} is for {topic_entity!r}")
    # One check of the entity, wherever it came from (record, topic name or key).
    if not NAME.match(record.entity) or len(record.entity) > MAX_ENTITY_LENGTH:
        raise RecordError(f"entity: {record.entity[:40]!r} is not 1-{MAX_ENTITY_LENGTH} letters, digits and "
                          ". _ : / @ + = -")
    if max_future is not None and record.ts > (time.time() if now is None else now) + max_future:
        raise RecordError(f"ts: {record.ts:.6g} is more than {max_future:.0f} s in the future")
    return record


def dumps(message: BaseModel) -> bytes:
    return orjson.dumps(message.model_dump(mode="json"))


def stable_id(*parts: object) -> str:
    """Deterministic id from the parts: the same input always yields the same id."""
    return hashlib.sha256("|".join(repr(p) for p in parts).encode()).hexdigest()[:32]


def json_schemas() -> dict[str, dict]:
    return {topic: model.model_json_schema() for topic, model in OUTPUT_MODELS.items()}
