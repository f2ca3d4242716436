"""Prometheus metrics of the worker (served on ``metrics_port`` when it is not 0)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECORDS_IN = Counter("omnistream_records_in_total", "Metric records consumed", ["topic"])
RECORDS_DLQ = Counter("omnistream_records_dlq_total", "Records sent to the dead-letter topic", ["reason"])
RECORDS_LATE = Counter("omnistream_records_late_total", "Points not newer than the entity's last point (redelivery)")
POINTS_SCORED = Counter("omnistream_points_scored_total", "Points scored as the last point of a window")
EVENTS_OUT = Counter("omnistream_anomaly_events_total", "Anomaly events published", ["state"])
TRANSFER_REQUESTS = Counter("omnistream_transfer_requests_total", "Transfer requests published", ["reason"])
BATCH_SIZE = Histogram("omnistream_score_batch_size", "Windows per model call",
                       buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384))
SCORE_SECONDS = Histogram("omnistream_score_seconds", "Seconds spent scoring one batch of records")
BATCH_SECONDS = Histogram("omnistream_batch_seconds", "Seconds to process one batch of records end to end")
MODELS_LOADED = Gauge("omnistream_models_loaded", "Models held by the scorer")
OPEN_INCIDENTS = Gauge("omnistream_open_incidents", "Entities with an open incident")


def serve(port: int) -> None:
    if port:
        start_http_server(port)
