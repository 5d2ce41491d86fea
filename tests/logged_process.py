"""A command run as a real process whose stderr (the log) is read line by line as it comes.

For tests of what an operator sees: the start-up lines, their format, one-line errors. Waiting for a line
waits on a condition the reader thread signals, never a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx


class LoggedProcess:
    def __init__(self, command: Sequence[str] | str, env: Mapping[str, str], cwd: Path | str) -> None:
        self.command, self.env, self.cwd = command, dict(env), cwd
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._changed = threading.Condition()
        self._done = False

    def start(self) -> LoggedProcess:
        shell = isinstance(self.command, str)  # a platform's start command runs in a shell
        self.process = subprocess.Popen(
            ["bash", "-c", self.command] if shell else list(self.command), env=self.env, cwd=self.cwd,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        """The first line for which `predicate` holds, waiting for it; fails on exit or timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self._done or left <= 0:
                    raise AssertionError(f"no such line ({'exited' if self._done else 'timed out'}); "
                                         f"log so far:\n" + "\n".join(self.lines[-30:]))
                self._changed.wait(left)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        with self._changed:  # the reader has the last lines once the pipe closes
            self._changed.wait_for(lambda: self._done, timeout=5)
        return code

    def wait_ready(self, base_url: str, path: str = "/ready", timeout: float = 40.0) -> None:
        """Until `path` answers 200 (the health check a platform runs)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n" + "\n".join(self.lines[-30:]))
            try:
                if httpx.get(base_url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} not 200 within {timeout:.0f} s:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.2)  # polling interval of the health check

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to the process group this object started (a shell and its child), as a platform does."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode
