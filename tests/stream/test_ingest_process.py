"""The ingest process's counters reach the worker's /metrics: totals shipped as JSON lines
become increments of the worker's own counters, never counted twice."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry, Counter

from omnistream.stream.ingest_process import CounterShipper, counter_totals


def counters(registry: CollectorRegistry) -> tuple[Counter, Counter]:
    return (Counter("t_records_in_total", "records", ["source"], registry=registry),
            Counter("t_errors_total", "errors", registry=registry))


def test_shipped_totals_become_increments_once():
    child, parent = CollectorRegistry(), CollectorRegistry()
    (records, errors), (records_here, errors_here) = counters(child), counters(parent)
    shipper = CounterShipper((records_here, errors_here))

    def ship() -> None:  # through JSON, as the status lines carry them
        shipper.apply(orjson.loads(orjson.dumps(counter_totals((records, errors)))))

    records.labels("shared").inc(3)
    ship()
    ship()  # the same totals again add nothing
    records.labels("shared").inc(2)
    records.labels("entity_topic").inc(7)
    errors.inc()
    ship()
    assert parent.get_sample_value("t_records_in_total", {"source": "shared"}) == 5
    assert parent.get_sample_value("t_records_in_total", {"source": "entity_topic"}) == 7
    assert parent.get_sample_value("t_errors_total") == 1


def test_totals_of_unknown_metrics_are_ignored():
    parent = CollectorRegistry()
    records_here, errors_here = counters(parent)
    CounterShipper((records_here, errors_here)).apply({"t_other": [[{}, 4.0]], "t_errors": [[{}, 2.0]]})
    assert parent.get_sample_value("t_errors_total") == 2
