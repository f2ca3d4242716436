import json
import subprocess
import sys

import pytest

COMMANDS = ["broker", "worker", "replay", "record", "fit", "evaluate", "bench", "schemas", "demo"]


def omnistream(*args):
    return subprocess.run([sys.executable, "-m", "omnistream.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = omnistream(command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_replay_rejects_ambiguous_input():
    result = omnistream("replay")
    assert result.returncode != 0 and "either a FILE or --dataset" in result.stdout + result.stderr


def test_schemas_are_written(tmp_path):
    assert omnistream("schemas", "--out", str(tmp_path)).returncode == 0
    schema = json.loads((tmp_path / "anomalies.schema.json").read_text())
    assert schema["title"] == "AnomalyEvent"


def test_bad_configuration_is_a_clear_error(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("window:\n  stride: 0\n")
    result = omnistream("worker", "--config", str(bad))
    assert result.returncode == 2 and "window.stride" in result.stdout + result.stderr
    missing = omnistream("worker", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stdout + missing.stderr


def test_unreachable_broker_is_a_clear_error():
    result = omnistream("worker", "--bootstrap", "127.0.0.1:1")
    assert result.returncode == 2 and "cannot reach Kafka at 127.0.0.1:1" in result.stdout + result.stderr
