"""Where alerts go: Alertmanager's v2 API, or a plain webhook (the same alerts as one JSON
document), over HTTP with the standard library."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime

import orjson


class AlertTarget:
    """POSTs a list of alerts; raises ``OSError`` (urllib's errors included) when it fails."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url, self.timeout = url, timeout

    def body(self, alerts: list[dict]) -> bytes:
        raise NotImplementedError

    def send(self, alerts: list[dict]) -> None:
        if not alerts:
            return
        request = urllib.request.Request(self.url, data=self.body(alerts), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as reply:
            reply.read()


class Alertmanager(AlertTarget):
    """Alertmanager's ``POST /api/v2/alerts`` (``url`` is Alertmanager's base address)."""

    def __init__(self, url: str, timeout: float = 10.0):
        super().__init__(url.rstrip("/") + "/api/v2/alerts", timeout)

    def body(self, alerts: list[dict]) -> bytes:
        return orjson.dumps(alerts)


class Webhook(AlertTarget):
    """Any HTTP endpoint: ``{"receiver": "omnistream", "alerts": [...]}`` with each alert's
    ``status`` (firing or resolved), as Alertmanager's own webhooks carry them."""

    def body(self, alerts: list[dict]) -> bytes:
        now = datetime.now(UTC)
        return orjson.dumps({"receiver": "omnistream", "alerts": [
            {**a, "status": "resolved" if datetime.fromisoformat(a["endsAt"]) <= now else "firing"} for a in alerts]})
