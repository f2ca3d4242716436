"""Prometheus metrics of the transfer service (served on ``--metrics-port`` when not 0); label
values come from fixed sets, never from entity names."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PENDING = Gauge("omnistream_transfer_pending", "Transfer requests received and not yet served or failed")
STATES = Counter("omnistream_transfer_states_total", "Transfer status messages published, by state",
                 ["state"])  # waiting | cold_start | training | done | failed
MODELS = Counter("omnistream_transfer_models_total", "Models announced, by strategy",
                 ["strategy"])  # base | full | partial
REQUEST_TO_ANNOUNCE = Histogram("omnistream_transfer_request_to_announce_seconds",
                                "From a request's time to its model announced",
                                buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600))
