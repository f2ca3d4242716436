"""`omnistream demo`, the README's first command, against the test broker."""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_demo_prints_events_and_dead_letters(test_broker_env):
    result = subprocess.run([sys.executable, "-m", "omnistream.cli.main", "demo", "--speed", "0", "--limit", "1500"],
                            env=test_broker_env, capture_output=True, text=True, timeout=300)
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert result.returncode == 0, out + result.stderr[-2000:]
    opened = int(re.search(r"events: (\d+) open", out).group(1))
    assert opened > 0 and "2 records dead-lettered" in out
    assert "the broker was already running and stays up" in out  # the demo stops only what it started
