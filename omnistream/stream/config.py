"""Worker configuration: defaults, then one YAML or TOML file, then OMNISTREAM_* variables.

Nested keys use a double underscore in the environment, e.g. ``OMNISTREAM_KAFKA__BOOTSTRAP``
or ``OMNISTREAM_WINDOW__STRIDE``. Kafka security settings (SASL/TLS) pass through
``kafka.security`` untouched to the clients.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from omnistream.ingest.mapping import SourceSettings
from omnistream.transfer.config import TransferSettings

ENV_PREFIX = "OMNISTREAM_"
OPEN_AFTER = 1  # decide.open_after, also the offline incident rule (offline.incidents)


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = Field(8, ge=1)
    replication: int = Field(1, ge=1)
    discover_every: float = Field(30.0, gt=0, description="seconds between looks for new metrics.<entity> topics")
    probe_every: float = Field(5.0, gt=0, description="seconds between looks at the broker for the readiness state")
    stall_after: float = Field(30.0, ge=0, description="seconds a held partition may keep records waiting without its "
                               "committed offset moving before the worker restarts itself (0: never)")
    # A dead worker's partitions move to the others after session_timeout without heartbeats;
    # the broker's default (45 s, Faust's 60 s) leaves them unscored for a minute.
    session_timeout: float = Field(10.0, ge=6, description="seconds without heartbeats before the group "
                                                           "gives a worker's partitions to the others")
    heartbeat_every: float = Field(3.0, gt=0, description="seconds between heartbeats (under a third of "
                                                          "session_timeout)")
    rebalance_timeout: float = Field(30.0, gt=0, description="seconds the members have to rejoin a rebalance")
    min_insync_replicas: int | None = Field(None, ge=1, description="min.insync.replicas of every topic the worker "
                                                                    "creates (default: the broker's)")
    retention_hours: float = Field(168.0, gt=0, description="retention of the topics the worker creates that are "
                                                            "not compacted (outputs, DLQ, internal points)")
    # Passed through to the Kafka clients, e.g. {"security.protocol": "SASL_SSL", ...}.
    security: dict[str, str] = {}

    @model_validator(mode="after")
    def _replicas_fit(self) -> KafkaSettings:
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication:
            raise ValueError(f"kafka.min_insync_replicas ({self.min_insync_replicas}) cannot exceed "
                             f"kafka.replication ({self.replication}): every write would be refused")
        return self

    @model_validator(mode="after")
    def _heartbeats_fit_the_session(self) -> KafkaSettings:
        if self.heartbeat_every * 3 > self.session_timeout:
            raise ValueError(f"kafka.heartbeat_every ({self.heartbeat_every} s) must be at most a third of "
                             f"kafka.session_timeout ({self.session_timeout} s)")
        return self


class WindowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stride: int = Field(1, ge=1, description="score every `stride` new points of an entity")
    batch_max: int = Field(2000, ge=1, description="records per processing batch")
    batch_within: float = Field(0.2, gt=0, description="seconds to wait for a batch to fill")
    idle_seconds: float = Field(86_400.0, ge=0, description="an entity silent this long (in data time, behind the "
                                                            "newest point seen) leaves memory: its state stays in the "
                                                            "changelog if it has a model, else it is dropped; "
                                                            "0 = never")


class RecordSettings(BaseModel):
    """Limits on incoming metric records; a record beyond them goes to the dead-letter topic."""

    model_config = ConfigDict(extra="forbid")
    max_bytes: int = Field(1_000_000, ge=1024, description="larger records are dead-lettered (a truncated copy)")
    max_future_seconds: float = Field(86_400.0, gt=0, description="a ts further ahead of the clock is refused: "
                                                                  "it would make the entity's later points late")


class DecideSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    open_after: int = Field(OPEN_AFTER, ge=1, description="anomalous windows in a row that open an incident (as "
                                                          "an alert rule's `for:`; 1 = the first one)")
    resolve_after: int = Field(3, ge=1, description="normal windows in a row that resolve an incident")
    ongoing_every: int = Field(12, ge=1, description="anomalous windows between 'ongoing' reminders")
    top_metrics: int = Field(3, ge=1)
    related_entities: int = Field(10, ge=1, description="a system event lists this many of its entities, most "
                                                        "anomalous first")
    publish_scores: bool = False
    adapt_threshold: bool = Field(True, description="SPOT: the threshold follows each entity's scores (else fixed)")


class ShiftSettings(BaseModel):
    """When an entity's level counts as moved for good (detectors.shift): one ``shift`` event,
    its inputs offset to the model's level, its threshold from the model file, a refit asked."""

    model_config = ConfigDict(extra="forbid")
    persist_seconds: float = Field(14400.0, ge=0, description="length of the blocks of the entity's data a shift "
                                                              "is judged over; 0 = off")
    share: float = Field(0.8, gt=0, le=1, description="a block with at least this share of flagged points is a "
                                                     "level shift")


class TriggerSettings(BaseModel):
    """When the worker asks for a new model for an entity that has one (besides new entities)."""

    model_config = ConfigDict(extra="forbid")
    drift_share: float = Field(0.2, gt=0, le=1, description="drift: share of flagged points in a block above which "
                                                            "the entity's model no longer fits; 1 = off")
    drift_points: int = Field(720, ge=10, description="drift: points per block the flagged share is measured over")
    schedule_hours: float = Field(0.0, ge=0, description="refit every N hours of the entity's data; 0 = off")


class SystemSettings(BaseModel):
    """How a system's entity points become system rows (topology.align) and how big a system may be."""

    model_config = ConfigDict(extra="forbid")
    step_seconds: float = Field(60.0, gt=0, description="one system row per step, on the epoch's grid")
    tolerance_seconds: float | None = Field(None, gt=0, description="a point further than this from its row is "
                                                                    "dropped; default: half a step (none is)")
    wait_rows: int = Field(3, ge=1, description="an entity this many rows behind (for stop_after) no longer holds "
                                                "its system's rows back")
    stop_after: float = Field(120.0, ge=0, description="seconds an entity may hold its system's rows back (wait_rows "
                                                      "behind, sending nothing) before it counts as stopped")
    fill_rows: int = Field(2, ge=0, description="rows a stopped entity's last values are carried forward")
    max_nodes: int = Field(1000, ge=1, description="larger topologies are refused (a dense graph is N x N)")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_id: str = Field("", description="Faust app id: the consumer groups and internal topics (changelogs) of "
                                        "this deployment; default <kafka.topic_prefix>omnistream, so that two "
                                        "deployments with different prefixes never share state")
    kafka: KafkaSettings = KafkaSettings()
    window: WindowSettings = WindowSettings()
    records: RecordSettings = RecordSettings()
    decide: DecideSettings = DecideSettings()
    triggers: TriggerSettings = TriggerSettings()
    shift: ShiftSettings = ShiftSettings()
    transfer: TransferSettings = TransferSettings()
    systems: SystemSettings = SystemSettings()
    model_dir: Path = Path("models-store")
    model_allowlist: Path | None = Field(None, description="sha256 sums (sha256sum format) of the model files the "
                                                           "worker may load from model_dir; others load only if "
                                                           "announced on the models topic")
    trust_model_folder: bool = Field(False, description="load every file in model_dir unchecked: a TorchScript file "
                                                        "is code, so only where nobody else can write the folder")
    device: str = Field("auto", description="auto (cuda when present), cpu or cuda")
    metrics_port: int = Field(0, ge=0, description="Prometheus port; 0 = off")
    metrics_host: str = Field("127.0.0.1", description="address the Prometheus endpoint binds to (0.0.0.0 = all)")
    data_dir: Path = Path(".omnistream-state")
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line")
    shutdown_seconds: float = Field(10.0, gt=0, description="after SIGTERM or SIGINT, seconds a clean stop may take "
                                                            "(flush, commit) before the process ends anyway")
    sources: list[SourceSettings] = Field([], description="more topics to read, each in a collector's format "
                                                          "(Telegraf, Prometheus remote write, OTLP) with its mapping")

    @model_validator(mode="after")
    def _app_id_of_the_deployment(self) -> Settings:
        if not self.app_id:
            self.app_id = f"{self.kafka.topic_prefix}omnistream"
        return self

    @model_validator(mode="after")
    def _one_source_per_topic(self) -> Settings:
        topics = [s.topic for s in self.sources]
        twice = sorted({t for t in topics if topics.count(t) > 1})
        if twice:
            raise ValueError(f"sources name a topic more than once: {', '.join(twice)}")
        own = sorted(t for t in topics if self.topic("metrics") == t or t.startswith(self.topic("metrics.")))
        if own:
            raise ValueError(f"sources must not name omnistream's own metric topics: {', '.join(own)}")
        return self

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}{name}"

    def source_topics(self) -> dict[str, SourceSettings]:
        """The configured source topics by name."""
        return {s.topic: s for s in self.sources}


def read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix in (".toml",):
        return tomllib.loads(text)
    if path.suffix in (".yaml", ".yml"):
        return yaml.safe_load(text) or {}
    raise ValueError(f"config file must be .toml, .yaml or .yml: {path}")


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in (f"{ENV_PREFIX}CONFIG",):
            continue
        path = key[len(ENV_PREFIX):].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(value) if value else value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = (_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict)
                       else value)
    return merged


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults < file (``path`` or $OMNISTREAM_CONFIG) < environment < explicit overrides."""
    environ = dict(os.environ if environ is None else environ)
    path = path or (Path(environ[f"{ENV_PREFIX}CONFIG"]) if environ.get(f"{ENV_PREFIX}CONFIG") else None)
    data = read_config_file(path) if path else {}
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(data)
