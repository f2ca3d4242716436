"""The Faust-specific glue of the worker, in one place: the client's credentials from the
librdkafka settings, and the worker class (readable logs in an outage, a bounded stop).

Where the worker leans on Faust's internals, it is here or named here:
- ``Worker._schedule_shutdown`` and ``_signal_stop_time`` (faust.Worker): the stop deadline;
- ``Table.data`` and ``Table.send_changelog`` (stream.outputs.send_state): a batch's window
  snapshots are written to the table's store and changelog directly, as bytes, with the
  delivery futures kept, instead of one awaited ``table[key] = value`` per entity;
- ``Event.message`` offsets (stream.guards): the gap check reads a batch's offsets;
- ``Consumer.seek_to_committed`` and ``Consumer.seek`` (``seek_to_start``): partitions
  committed at offset 0 are positioned by the worker itself after a rebalance.
"""

from __future__ import annotations

import logging
import ssl

import faust

from omnistream.stream.logs import make_readable
from omnistream.stream.shutdown import end_after


def tls_context(security: dict[str, str]) -> ssl.SSLContext:
    """The TLS context of Faust's own client from the librdkafka settings: the CA
    (``ssl.ca.location``) and, for mutual TLS, the client certificate and key
    (``ssl.certificate.location``, ``ssl.key.location``, ``ssl.key.password``)."""
    context = ssl.create_default_context(cafile=security.get("ssl.ca.location"))
    if security.get("ssl.certificate.location"):
        context.load_cert_chain(security["ssl.certificate.location"], security.get("ssl.key.location"),
                                security.get("ssl.key.password"))
    if security.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
        context.check_hostname = False
    return context


def credentials(security: dict[str, str]) -> faust.types.auth.CredentialsT | None:
    """SASL / TLS settings in librdkafka spelling, for Faust's own client (``sasl.mechanisms``,
    or its alias ``sasl.mechanism``, names the SASL mechanism, e.g. SCRAM-SHA-256)."""
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    context = tls_context(security) if "SSL" in protocol else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=security.get("sasl.username"), password=security.get("sasl.password"),
                                     mechanism=security.get("sasl.mechanism")
                                     or security.get("sasl.mechanisms", "PLAIN"),
                                     ssl_context=context)
    return faust.SSLCredentials(context)


async def seek_to_start(app: faust.App, topics: set[str]) -> list[tuple[str, int]]:
    """Position the assigned partitions of ``topics`` whose committed offset is 0 (or none) at
    that start, before Faust resumes them. Faust seeks every partition to its committed offset
    when a rebalance completes, but aiokafka's ``seek_to_committed`` skips a committed offset
    of 0, and the records its fetcher read meanwhile, while Faust held the partition paused for
    table recovery, are dropped: the partition then starts at the fetcher's position (often
    the end), and the records before it are never delivered. Called from the
    ``on_rebalance_complete`` signal, which Faust sends just before its own seek; returns the
    partitions positioned."""
    committed = await app.consumer.seek_to_committed()
    start = sorted((tp, offset) for tp, offset in committed.items()
                   if tp.topic in topics and (offset is None or offset <= 0))
    for tp, _ in start:
        await app.consumer.seek(tp, 0)  # a start since deleted is reset to the earliest offset
    return [(tp.topic, tp.partition) for tp, _ in start]


class Worker(faust.Worker):
    """Faust's worker whose log stays readable in an outage (repeated warnings are thinned) and
    whose stop on a signal ends within ``shutdown_seconds`` (stream.shutdown)."""

    shutdown_seconds: float = 10.0
    json_logs: bool = False

    def _schedule_shutdown(self, signal: int) -> None:
        if not self._signal_stop_time:
            end_after(self.shutdown_seconds, self._still_stopping)
            # The ingest hop stops now, beside Faust's own stop, not after it: its batch in hand
            # is committed (or given up) and its group left within the deadline.
            ingest = getattr(self.app, "omnistream_ingest", None)
            if ingest is not None:
                ingest.request_stop()
        super()._schedule_shutdown(signal)

    def _still_stopping(self) -> str:
        health = getattr(self.app, "omnistream_health", None)
        broker = "the broker is unreachable" if health is not None and health.broker_down else "the broker answers"
        return f"{broker}; the Kafka clients are still closing (last offsets not committed)"

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        make_readable(logger.handlers, self.json_logs)
