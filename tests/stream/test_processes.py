"""`worker --processes N`: N processes, each told its index, stopped together."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from omnistream.stream.config import Settings
from omnistream.stream.ingest_consumer import subscription
from omnistream.stream.processes import PROCESS_ENV, metrics_port_of, state_folder
from omnistream.stream.topics import metric_topic_pattern

RUNNER = "from omnistream.stream.processes import run_processes; import sys; sys.exit(run_processes({argv!r}, {n}))"


def _run(argv: list[str], n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER.format(argv=argv, n=n)])


def test_each_process_gets_its_index_and_the_worst_exit_code_is_returned(tmp_path):
    # SIGTERM ignored, and none ends before all three have started: the first to end stops the
    # others, which must still exit with their own codes
    script = (f"import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              f"i = os.environ['{PROCESS_ENV}']; open(r'{tmp_path}/' + i, 'w').write(i); "
              f"[time.sleep(0.05) for _ in range(600) if len(os.listdir(r'{tmp_path}')) < 3]; sys.exit(int(i) * 7)")
    assert _run([sys.executable, "-c", script], 3).wait(60) == 14
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2"]


def test_one_ending_for_good_stops_the_others(tmp_path):
    script = (f"import os, sys, time; i = int(os.environ['{PROCESS_ENV}']); "
              "sys.exit(2) if i == 0 else time.sleep(120)")
    began = time.monotonic()
    code = _run([sys.executable, "-c", script], 2).wait(60)
    assert code == 128 + signal.SIGTERM  # the sleeper was stopped by SIGTERM, not left behind
    assert time.monotonic() - began < 30


def test_sigterm_reaches_every_process(tmp_path):
    script = (f"import os, signal, sys, time; i = os.environ['{PROCESS_ENV}']; "
              f"signal.signal(signal.SIGTERM, lambda *a: (open(r'{tmp_path}/' + i, 'w').close(), sys.exit(0))); "
              f"open(r'{tmp_path}/ready-' + i, 'w').close(); time.sleep(120)")
    proc = _run([sys.executable, "-c", script], 2)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("ready")) == ["0", "1"]


def test_each_process_has_its_own_state_folder_and_port():
    assert state_folder(Path("state"), None) == Path("state")
    assert state_folder(Path("state"), 1) == Path("state/process-1")
    assert (metrics_port_of(9100, 2), metrics_port_of(0, 2), metrics_port_of(9100, None)) == (9102, 0, 9100)


def test_the_ingest_subscription_matches_the_metric_topics_and_nothing_else():
    settings = Settings(kafka={"topic_prefix": "prod.eu-1+"})
    pattern, *listed = subscription(settings)
    assert pattern == r"^prod\.eu-1\+metrics(\..+)?$" and listed == []
    names = ["prod.eu-1+metrics", "prod.eu-1+metrics.web-1", "prod.eu-1+metrics-dlq", "prodXeu-1+metrics",
             "prod.eu-1+metricsX", "other.metrics.web-1", "prod.eu-1+metrics."]
    assert [bool(re.match(pattern, n)) for n in names] == [bool(metric_topic_pattern(settings).match(n))
                                                            for n in names] == [True, True, False, False, False,
                                                                                False, False]
