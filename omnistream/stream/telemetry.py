"""Prometheus metrics of the worker (served with the health probes by stream.health on
``metrics_host:metrics_port`` when the port is not 0; the host is 127.0.0.1 by default, so the
endpoint is not open to the network unless asked)."""

from __future__ import annotations

from prometheus_client import Counter, Enum, Gauge, Histogram

# Label values come from small fixed sets: record data (entity or metric names) never becomes a label.
RECORDS_IN = Counter("omnistream_records_in_total", "Metric records consumed",
                     ["source"])  # shared | entity_topic | collector
RECORDS_DLQ = Counter("omnistream_records_dlq_total", "Records sent to the dead-letter topic",
                      ["reason"])  # entity | ts | metrics | size | record | format | samples
SAMPLES_LATE = Counter("omnistream_samples_late_total", "Collector samples for a step already assembled (dropped)")
RECORDS_LATE = Counter("omnistream_records_late_total", "Points not newer than the entity's last point (redelivery)")
POINTS_SCORED = Counter("omnistream_points_scored_total", "Points scored as the last point of a window")
EVENTS_OUT = Counter("omnistream_anomaly_events_total", "Anomaly events published", ["state"])
TRANSFER_REQUESTS = Counter("omnistream_transfer_requests_total", "Transfer requests published", ["reason"])
BATCH_SIZE = Histogram("omnistream_score_batch_size", "Windows per model call",
                       buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384))
SCORE_SECONDS = Histogram("omnistream_score_seconds", "Seconds spent scoring one batch of records")
BATCH_SECONDS = Histogram("omnistream_batch_seconds", "Seconds to process one batch of records end to end")
MODELS_LOADED = Gauge("omnistream_models_loaded", "Models held by the scorer")
MODELS_QUARANTINED = Counter("omnistream_models_quarantined_total", "Models set aside after failing to score")
MODELS_REFUSED = Counter("omnistream_models_refused_total", "Model files neither in the allowlist nor announced")
MODEL_FOLDER_EMPTY = Gauge("omnistream_model_folder_empty", "1 when the model folder is missing or holds no model")
BROKER_ERRORS = Counter("omnistream_broker_errors_total", "Failed calls to the broker, by what the worker was doing",
                        ["operation"])
ENTITIES_IN_MEMORY = Gauge("omnistream_entities_in_memory", "Entities whose window the worker holds in memory")
TOPOLOGIES = Gauge("omnistream_topologies", "Systems whose call graph the worker holds")
TOPOLOGIES_REFUSED = Counter("omnistream_topologies_refused_total",
                             "Topology messages not taken (malformed, or over topology.max_nodes)")
SYSTEM_POINTS_DROPPED = Counter("omnistream_system_points_dropped_total",
                                "Entity points that fit no row of their system (off the grid, or too late)")
SYSTEMS_UNSCORED = Counter("omnistream_system_rows_unscored_total",
                           "System rows without a system model to score them")
OPEN_INCIDENTS = Gauge("omnistream_open_incidents", "Entities with an open incident")
WORKER_STATE = Enum("omnistream_worker_state", "What the worker is doing",
                    states=["starting", "rebalancing", "running", "broker_unreachable"])
WORKER_STATE_CHANGES = Counter("omnistream_worker_state_changes_total",
                               "Times the worker entered each state (an outage seen is counted, however short)",
                               ["state"])
WORKER_RESTARTS = Gauge("omnistream_worker_restarts", "Times the worker process was started again after a crash")
LAST_BATCH = Gauge("omnistream_last_batch_timestamp_seconds", "Unix time the last batch of points was processed")
CONSUMER_LAG = Gauge("omnistream_consumer_lag_records", "Records waiting per consumed partition (end offset minus the "
                     "group's committed one), summed over the topics of a kind",
                     ["topic", "partition"])  # topic: metrics | collector | points | system_points
END_TO_END = Histogram("omnistream_end_to_end_seconds", "From the Kafka timestamp of the oldest record of an "
                       "entity's ingest batch to the scoring batch's outputs delivered (one per entity and batch)",
                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800))
POINTS_FLAGGED = Counter("omnistream_points_flagged_total", "Scored points at or over their threshold "
                         "(calibrated score >= 1): with points_scored, the share flagged")
MODELS_BY = Gauge("omnistream_models", "Models held by the scorer, by detector and how they were made",
                  ["detector", "strategy"])
