"""`omnistream worker` as a child process: started, awaited until ready, stopped or killed.

The demo, the end-to-end benchmark and the end-to-end tests all run the worker this way, so
that it is the real command, in its own process, with its own state folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

READY_MARK = b"[^Worker]: Ready"


class WorkerProcess:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        # Info level: the ready mark is an info line.
        self.cmd = [sys.executable, "-m", "omnistream.cli.main", "worker", *args, "--loglevel", "info"]
        # With `--processes N`, ready once each of the N processes has said so.
        self.processes = int(args[args.index("--processes") + 1]) if "--processes" in args else 1
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 180.0) -> WorkerProcess:
        """Start and wait for Faust's ready mark (each process's); raise with the log's tail if it
        dies or stalls."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path.read_bytes()[offset:].count(READY_MARK) >= self.processes:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout:.0f} s:\n{self.tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit, as in a crash."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self._close_log(b"\n--- killed ---\n")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, Faust's graceful shutdown; SIGKILL if it takes longer than ``timeout``."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._close_log()

    def _close_log(self, note: bytes = b"") -> None:
        if self._log is not None:
            self._log.write(note)
            self._log.close()
            self._log = None
