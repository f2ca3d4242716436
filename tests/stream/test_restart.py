"""The worker command outlives a crash of its Faust worker: the child is started again, and it
dies with its parent."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from omnistream.stream.restart import RESTARTS_ENV, run_restarting

CRASH_TWICE = textwrap.dedent(f"""
    import os, sys
    restarts = int(os.environ["{RESTARTS_ENV}"])
    print("run", restarts, flush=True)
    sys.exit(0 if restarts == 2 else 1)  # crashes twice, then ends cleanly
""")


def test_a_crashed_worker_is_started_again_until_it_ends_cleanly(capfd, monkeypatch):
    monkeypatch.setattr("omnistream.stream.restart.FIRST_WAIT", 0.1)
    assert run_restarting([sys.executable, "-c", CRASH_TWICE]) == 0
    out, err = capfd.readouterr()
    assert out.split("\n")[:3] == ["run 0", "run 1", "run 2"]
    assert err.count("starting it again") == 2 and "exited with code 1" in err


def test_a_first_run_refused_at_start_is_not_retried(capfd):
    assert run_restarting([sys.executable, "-c", "import sys; sys.exit(2)"]) == 2
    assert "starting it again" not in capfd.readouterr().err


def test_the_child_dies_with_a_killed_parent(tmp_path):
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from omnistream.stream.restart import "
                               f"run_restarting; sys.exit(run_restarting([sys.executable, '-c', {child!r}]))"])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the child outlived its killed parent")


def test_a_stop_signal_reaches_the_child_and_its_code_comes_back(tmp_path):
    ready = tmp_path / "ready"
    child = (f"import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
             f"open({str(ready)!r}, 'w').close(); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from omnistream.stream.restart import "
                               f"run_restarting; sys.exit(run_restarting([sys.executable, '-c', {child!r}]))"])
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(20) == 0  # the child's graceful exit, not a restart


def test_a_child_killed_by_a_signal_is_restarted_and_reported_as_128_plus_n(capfd, monkeypatch):
    monkeypatch.setattr("omnistream.stream.restart.FIRST_WAIT", 0.1)
    script = (f"import os, signal, sys; n = int(os.environ['{RESTARTS_ENV}']); "
              "os.kill(os.getpid(), signal.SIGKILL) if n == 0 else sys.exit(2)")
    assert run_restarting([sys.executable, "-c", script]) == 2
    assert "exited with code 137" in capfd.readouterr().err
