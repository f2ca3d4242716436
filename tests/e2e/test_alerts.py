"""`omnistream alerts` against a real Alertmanager (Debian's prometheus-alertmanager) that
notifies a webhook: an incident fires once, stays firing while open (re-sent), resolves when
it ends, and a forwarder killed in between neither loses nor repeats a notification."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from confluent_kafka import Producer

from omnistream.stream.records import AnomalyEvent, MetricContribution, ModelRef, dumps, stable_id

pytestmark = pytest.mark.e2e
ALERTMANAGER_PORT, HOOK_PORT = 19193, 19194
T0 = 1_700_000_000.0


def event(entity: str, state: str, ts: float, system: str | None = None) -> AnomalyEvent:
    return AnomalyEvent(event_id=stable_id(entity, state, ts), entity=entity, system=system, state=state, ts=ts,
                        window=(ts - 300, ts), score=3.0, threshold=1.0, calibrated_score=2.5,
                        model=ModelRef(name="dcvae", version="1"),
                        top_metrics=[MetricContribution(metric="cpu", contribution=0.7)])


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Hook.received.extend({"status": a["status"], **a["labels"]} for a in body["alerts"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def alertmanager(tmp_path):
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        assert os.environ.get("OMNISTREAM_REQUIRE_PROMETHEUS") != "1", "prometheus-alertmanager is not installed"
        pytest.skip("prometheus-alertmanager is not installed (apt install prometheus-alertmanager)")
    Hook.received = []
    hook = ThreadingHTTPServer(("127.0.0.1", HOOK_PORT), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    config = {"route": {"receiver": "hook", "group_by": ["alertname", "entity", "incident"], "group_wait": "1s",
                        "group_interval": "1s", "repeat_interval": "1h"},
              "receivers": [{"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{HOOK_PORT}/",
                                                                  "send_resolved": True}]}]}
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    log = open(tmp_path / "alertmanager.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'alertmanager.yml'}",
                             f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
                             "--cluster.listen-address="], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ALERTMANAGER_PORT}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=2).read()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(30)
    hook.shutdown()
    log.close()


def active(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true&silenced=false&inhibited=false", timeout=5) as r:
        return {a["labels"]["entity"]: a for a in json.loads(r.read())}


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_incidents_fire_once_stay_firing_and_resolve_across_a_forwarder_restart(kafka_bootstrap, topic_prefix,
                                                                                alertmanager, tmp_path):
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def publish(*events: AnomalyEvent) -> None:
        for e in events:
            producer.produce(f"{topic_prefix}anomalies", key=e.entity.encode(), value=dumps(e))
        assert producer.flush(30) == 0

    command = [sys.executable, "-m", "omnistream.cli.main", "alerts", "--alertmanager", alertmanager,
               "--bootstrap", kafka_bootstrap, "--prefix", topic_prefix, "--resend", "2", "--start", "earliest",
               "--plot-url", "http://grafana/d/omnistream?var-entity={entity}"]
    log = open(tmp_path / "alerts.log", "ab")

    def forwarder() -> subprocess.Popen:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    opened = event("web-1", "open", T0)
    publish(opened, event("db-1", "open", T0 + 60, system="shop"), opened)  # a repeated event: no second alert
    proc = forwarder()
    try:
        wait_until(lambda: set(active(alertmanager)) == {"web-1", "db-1"}, 60, "both incidents should fire")
        alert = active(alertmanager)["db-1"]
        assert alert["labels"]["system"] == "shop" and alert["labels"]["model"] == "dcvae"
        assert alert["annotations"]["top_metrics"] == "cpu (70%)" and "var-entity=db-1" in alert["generatorURL"]
        publish(event("web-1", "ongoing", T0 + 3600))
        time.sleep(3)
        proc.send_signal(signal.SIGKILL)  # no warning: whatever it had not committed is read again
        proc.wait(30)
        publish(event("web-1", "resolved", T0 + 7200))
        proc = forwarder()
        wait_until(lambda: set(active(alertmanager)) == {"db-1"}, 60, "web-1 should resolve after the restart")
        time.sleep(3 * 2 + 4)  # past a firing alert's endsAt: db-1 stays firing only if it is re-sent
        assert set(active(alertmanager)) == {"db-1"}
        wait_until(lambda: any(h["status"] == "resolved" for h in Hook.received), 30, "the webhook hears of it")
        notices = sorted((h["entity"], h["status"]) for h in Hook.received)
        assert notices == [("db-1", "firing"), ("web-1", "firing"), ("web-1", "resolved")], notices
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
