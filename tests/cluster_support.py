"""Several instances of the service over one Redis, as separate `python -m app` processes on loopback.

The simulated market runs in the test's own process (its request log is the ground truth of what the
deployment sent upstream); each instance is a real process with STORE=redis, its own port and DATA_DIR,
killed with SIGKILL or stopped with SIGTERM as a platform would. Every cluster has its own Redis key prefix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx
import orjson

from app import diff
from tests.redis_support import free_port, unique_prefix
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[1]

# Tight limits: the ingest at REFRESH_INTERVAL_S=1 wants more than this, so each budget really binds.
RATE_LIMITS = {"dexscreener": 90, "geckoterminal": 8, "jupiter": 20}


class Instance:
    """One `python -m app` process of the deployment."""

    def __init__(self, name: str, env: dict[str, str]):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tempfile.mkdtemp(prefix=f"tokenstream-{name}-")
        self.env = {**env, "PORT": str(self.port), "DATA_DIR": self.data_dir}
        self.process: subprocess.Popen | None = None
        self.log_path = Path(self.data_dir) / "stderr.log"

    def start(self) -> Instance:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "app"], env=self.env, cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease released (a crash)."""
        if self.alive:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    async def health(self, client: httpx.AsyncClient) -> dict | None:
        try:
            response = await client.get(self.url + "/health", timeout=2)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    async def ready(self, client: httpx.AsyncClient) -> bool:
        if not self.alive:
            raise AssertionError(f"instance {self.name} exited: {self.stderr()}")
        try:
            return (await client.get(self.url + "/ready", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False


def start_service(env: dict[str, str], *args: str) -> subprocess.Popen:
    """`python -m app [args]` with `env`, its stderr kept for a failure's message."""
    return subprocess.Popen([sys.executable, "-m", "app", *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def stop_service(process: subprocess.Popen, timeout: float = 15.0) -> None:
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Cluster:
    """N instances over one Redis (their own key prefix) reading one market."""

    def __init__(self, market, redis_url: str, n: int = 3, **env: str):
        self.prefix = unique_prefix("cluster")
        self.env = {
            **os.environ, "HOST": "127.0.0.1", "STORE": "redis", "REDIS_URL": redis_url,
            "REDIS_PREFIX": self.prefix, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "warning",
            "DEXSCREENER_URL": market.dexscreener_url, "GECKOTERMINAL_URL": market.geckoterminal_url,
            "JUPITER_URL": market.jupiter_url, "REFRESH_INTERVAL_S": "1", "DISCOVERY_INTERVAL_S": "5",
            "CACHE_TTL_S": "0", "HEARTBEAT_S": "1", "LEADER_TTL_S": "3",
            "RATE_LIMITS": ",".join(f"{k}={v}" for k, v in RATE_LIMITS.items()), **env,
        }
        self.instances = [Instance(f"i{k}", self.env) for k in range(n)]

    def start(self) -> Cluster:
        for instance in self.instances:
            instance.start()
        return self

    def add(self) -> Instance:
        instance = Instance(f"i{len(self.instances)}", self.env)
        self.instances.append(instance)
        return instance.start()

    def close(self) -> None:
        for instance in self.instances:
            instance.kill()

    @property
    def alive(self) -> list[Instance]:
        return [i for i in self.instances if i.alive]

    async def healths(self, client: httpx.AsyncClient, instances: Sequence[Instance] | None = None) -> list[dict]:
        return [await i.health(client) or {} for i in (instances or self.alive)]

    async def wait_ready(self, client: httpx.AsyncClient, within: float = 40) -> None:
        for instance in self.alive:
            await wait_for(lambda i=instance: i.ready(client), timeout=within, interval=0.1,
                           message=f"{instance.name} ready")

    async def leader(self, client: httpx.AsyncClient, within: float = 20) -> Instance:
        """The one instance that says it leads, once every live one names it."""

        async def agreed() -> Instance | None:
            healths = await self.healths(client)
            leaders = [i for i, h in zip(self.alive, healths) if h.get("role") == "leader"]
            if len(leaders) == 1 and all(h.get("leader") == healths[self.alive.index(leaders[0])]["instance"]
                                         for h in healths):
                return leaders[0]
            return None

        return await wait_for(agreed, timeout=within, interval=0.1, message="one agreed leader")


def max_in_any_window(times: Sequence[float], window_s: float = 60.0) -> int:
    """The most requests sent in any sliding window of `window_s` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class Stream:
    """One SSE client, keeping its view as the contract's client rule says, and failing on any gap.

    A delta must be of the client's epoch with `prev_seq` at least its seq (CONTRACT §5 / app.diff); a
    snapshot after the first one is counted (a resume or a failover that lost track would need one).
    """

    def __init__(self, client: httpx.AsyncClient, url: str, last_event_id: str | None = None):
        self.client, self.url = client, url
        self.headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.rows: list[dict] | None = None
        self.epoch: str | None = None
        self.seq: int | None = None
        self.events: list[tuple[str, dict]] = []
        self.last_id: str | None = None
        self.error: str | None = None

    @property
    def snapshots(self) -> int:
        return sum(1 for kind, _ in self.events if kind == "snapshot")

    def deltas(self) -> list[dict]:
        return [data for kind, data in self.events if kind == "delta"]

    def on(self, kind: str, data: dict, event_id: str | None) -> None:
        self.events.append((kind, data))
        if kind == "snapshot":
            self.rows, self.epoch, self.seq = data["rows"], data["epoch"], data["seq"]
        elif kind == "delta":
            if self.rows is None or data["epoch"] != self.epoch or data["prev_seq"] < self.seq:
                self.error = (f"gap: delta {data['epoch']}:{data['prev_seq']}->{data['seq']} "
                              f"after {self.epoch}:{self.seq}")
                raise AssertionError(self.error)
            self.rows, self.seq = diff.apply(self.rows, data), data["seq"]
        if event_id:
            self.last_id = event_id

    async def run(self) -> None:
        async with self.client.stream("GET", self.url, headers=self.headers, timeout=None) as response:
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "event" in fields:
                        self.on(fields["event"], orjson.loads(fields["data"]), fields.get("id"))
                    fields = {}
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
