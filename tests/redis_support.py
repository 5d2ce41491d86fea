"""Redis for tests: the shared server (each test under its own key prefix) and private servers for faults.

The shared server is REDIS_URL, or redis://127.0.0.1:6379 when that answers. Tests skip, saying why, only
when REDIS_URL is unset, CI is unset and no local Redis answers; in CI a missing Redis is a failure.
Fault-injection tests start their own `redis-server` (stopped, flushed and restarted freely) and never
touch the shared one's data beyond their prefix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from app.redis.connection import connect
from app.redis.keys import Keys

DEFAULT_URL = "redis://127.0.0.1:6379"


def _answers(url: str) -> bool:
    try:
        return bool(sync_redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (sync_redis.RedisError, OSError):
        return False


def shared_redis_url() -> str:
    """The shared server's URL, or a skip (with the reason) where the rules above allow one."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    if os.environ.get("CI"):
        return DEFAULT_URL  # CI must have Redis: a failure to connect fails the test
    if _answers(DEFAULT_URL):
        return DEFAULT_URL
    pytest.skip("no Redis: set REDIS_URL (or run .ci/run, which starts one)")


def unique_prefix(name: str = "t") -> str:
    return f"test:{name}:{secrets.token_hex(4)}"


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key of one test's prefix (never FLUSHALL: the server is shared)."""
    client = sync_redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_url() -> str:
    return shared_redis_url()


@pytest.fixture
def keys(redis_url: str) -> Iterator[Keys]:
    prefix = unique_prefix()
    yield Keys(prefix)
    delete_prefix(redis_url, prefix)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A `redis-server` of our own on a free port, for stopping (SIGSTOP), flushing and restarting."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI"):
                raise RuntimeError("redis-server is not installed")
            pytest.skip("redis-server is not installed (needed to inject Redis faults)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)  # polling the server's readiness, not waiting for an event
        return self

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        client = sync_redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port: the data is gone (no persistence), as a replaced Redis."""
        self.stop()
        self.start()


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server
