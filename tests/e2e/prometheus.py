"""A real Prometheus (Debian's package) scraping running omnistream processes, to check the
alert rules and the Grafana dashboard in deploy/ against what the processes really export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "omnistream-rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "omnistream-dashboard.json"
COMPARISON = re.compile(r"\s*(>|<|==|!=|>=|<=)\s*[-+0-9.e]+\s*$")
METRIC = re.compile(r"\b(omnistream_[a-z_]+?)(?:_bucket|_count|_sum)?\b(?=[{\[\s)])")


def available() -> bool:
    """Prometheus and promtool are installed (CI installs them; see .ci/run)."""
    return bool(shutil.which("prometheus") and shutil.which("promtool"))


def required() -> bool:
    return os.environ.get("OMNISTREAM_REQUIRE_PROMETHEUS") == "1"


def expressions() -> dict[str, str]:
    """Every alert rule's and dashboard panel's PromQL, by where it comes from."""
    out = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            out[f"rule {rule['alert']}"] = rule["expr"]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            out[f"panel {panel['title']} {target['refId']}"] = target["expr"]
    return out


class Prometheus:
    """``prometheus`` on ``port`` scraping ``targets`` (job -> host:port) every second."""

    def __init__(self, folder: Path, port: int, targets: dict[str, str]):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(RULES, folder / RULES.name)
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [RULES.name],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                     for job, target in targets.items()]}
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(folder / "prometheus.log", "wb")
        self.proc = subprocess.Popen(["prometheus", f"--config.file={folder / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={folder / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{port}"], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def query(self, expr: str) -> dict:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as reply:
            return json.loads(reply.read())

    def wait_for(self, expr: str, series: int = 1, timeout: float = 60.0) -> list:
        """The result of ``expr`` once it has ``series`` series."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query(expr)["data"]["result"]
                if len(result) >= series:
                    return result
            except OSError:
                pass  # still starting
            if time.monotonic() > deadline:
                raise TimeoutError(f"no data for {expr} after {timeout:.0f} s")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def check_rules_file() -> str:
    return subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True,
                          check=True).stdout


def compared(expr: str) -> list[str]:
    """What an alert's condition compares with its thresholds (each side of an ``and``): each
    must have data, or the alert could never fire."""
    return [COMPARISON.sub("", part).strip() for part in re.split(r"\band\b(?: on \([^)]*\))?", expr)]
