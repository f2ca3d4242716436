"""What the worker is doing, for operators and orchestrators: a state (``starting``,
``rebalancing``, ``running``, ``broker_unreachable``) exported as the Prometheus enum
``omnistream_worker_state``, each entry into a state counted in
``omnistream_worker_state_changes_total`` (what a scrape between two changes would miss), and
served beside ``/metrics`` as

- ``/ready``: 200 while ``running``, else 503 (a readiness probe: route no work here);
- ``/live``: 200 while starting, then while the event loop has turned within ``stall_seconds``
  (a liveness probe: restart the process when it is stuck, not when the broker is away).
"""

from __future__ import annotations

import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app

from omnistream.stream import telemetry


class WorkerHealth:
    def __init__(self, stall_seconds: float = 120.0, clock=time.monotonic):
        self.started = self.rebalancing = self.broker_down = False
        self.stall_seconds, self.clock = stall_seconds, clock
        self.last_beat = clock()
        self._published: str | None = None
        self._publish()

    @property
    def state(self) -> str:
        if self.broker_down:
            return "broker_unreachable"
        if not self.started:
            return "starting"
        return "rebalancing" if self.rebalancing else "running"

    def set(self, **flags: bool) -> None:
        """Change some of ``started``, ``rebalancing``, ``broker_down``."""
        for name, value in flags.items():
            setattr(self, name, value)
        if flags.get("started"):
            self.beat()
        self._publish()

    def beat(self) -> None:
        """The event loop is turning (called from a timer)."""
        self.last_beat = self.clock()

    @property
    def alive(self) -> bool:
        """Starting (recovering tables may take long) or beating lately."""
        return not self.started or self.clock() - self.last_beat < self.stall_seconds

    def _publish(self) -> None:
        state = self.state
        if state != self._published:
            telemetry.WORKER_STATE.state(state)
            telemetry.WORKER_STATE_CHANGES.labels(state).inc()
            self._published = state


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: not worth a line each
        pass


def serve(health: WorkerHealth, port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve ``/metrics``, ``/ready`` and ``/live`` on a daemon thread."""
    metrics = make_wsgi_app(REGISTRY)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in ("/ready", "/live"):
            ok = health.state == "running" if path == "/ready" else health.alive
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"{health.state}\n".encode()]
        return metrics(environ, start_response)

    server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="omnistream-http", daemon=True).start()
    return server
