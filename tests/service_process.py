"""Run `python -m app --demo` as a real process on a free loopback port (for tests that need a whole process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DemoProcess:
    """`python -m app --demo` with fast intervals; `url` once ready."""

    def __init__(self, data_dir: Path, port: int | None = None, **env: str):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "DATA_DIR": str(data_dir),
                    "REFRESH_INTERVAL_S": "1", "DISCOVERY_INTERVAL_S": "5", "CACHE_TTL_S": "0",
                    "HEARTBEAT_S": "2", "RATE_LIMITS": "dexscreener=300,geckoterminal=60,jupiter=120",
                    "LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT), **env}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> DemoProcess:
        self.process = subprocess.Popen([sys.executable, "-m", "app", "--demo"], env=self.env, cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling the readiness endpoint, not waiting for an event
        self.stop()
        raise RuntimeError(f"service not ready within {timeout}s")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
