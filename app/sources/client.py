"""One upstream over the shared httpx client: budget, cache, retries, circuit breaker, health figures.

Every request to an upstream goes through `UpstreamClient.get_json`, so the budget it keeps is the
whole truth about what that upstream received from us.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import orjson
from cachetools import TTLCache

from app.sources.budget import CircuitBreaker, SlidingWindowBudget, backoff_delay, retry_after_seconds
from app.sources.values import UpstreamFormatError

log = logging.getLogger("app.sources")

MAX_ATTEMPTS = 3


class UpstreamError(Exception):
    """A call that did not produce usable JSON after its retries (or was not allowed to go out)."""

    def __init__(self, source: str, message: str, status: int | None = None, counted: bool = True):
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message
        self.status = status
        self.counted = counted  # False when nothing went out (budget or open circuit): not a failure


@dataclass
class SourceHealth:
    ok: bool | None = None
    last_success: float | None = None
    last_error: dict[str, Any] | None = None
    calls: dict[str, int] = field(default_factory=dict)  # by status ("200", "429", "timeout", ...)
    skipped_items: int = 0


ObserveCall = Callable[[str, str, float], None]  # (source, status, seconds)


class UpstreamClient:
    def __init__(
        self,
        source: str,
        http: httpx.AsyncClient,
        base_url: str,
        per_minute: int,
        cache_ttl_s: float,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        observe: ObserveCall | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.source = source
        self.base_url = base_url
        self.budget = SlidingWindowBudget(per_minute, clock=clock)
        self.breaker = CircuitBreaker(clock=clock)
        self.health = SourceHealth()
        self._http = http
        self._headers = dict(headers or {})
        self._timeout = timeout_s
        self._cache: TTLCache[tuple[str, tuple[tuple[str, str], ...]], Any] | None = (
            TTLCache(maxsize=4096, ttl=cache_ttl_s, timer=clock) if cache_ttl_s > 0 else None
        )
        self._paused_until = 0.0  # set by Retry-After: nothing goes out before this
        self._clock = clock
        self._observe = observe

    @property
    def circuit(self) -> str:
        return self.breaker.state

    def cached(self, path: str, params: Mapping[str, Any] | None = None) -> Any | None:
        if self._cache is None:
            return None
        return self._cache.get(_cache_key(path, params))

    def calls_affordable(self) -> int:
        """How many calls could go out now without waiting (0 while paused or the circuit is open)."""
        if self._clock() < self._paused_until or self.breaker.state == "open":
            return 0
        return self.budget.available()

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None, max_wait: float = 30.0) -> Any:
        """GET base_url+path; the decoded JSON, from cache when an identical call was answered within the TTL.

        Waits at most `max_wait` seconds in total for budget, `Retry-After` and backoff; raises
        UpstreamError when no usable answer came.
        """
        key = _cache_key(path, params)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        deadline = self._clock() + max_wait
        last: UpstreamError | None = None
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                delay = backoff_delay(attempt)
                if self._clock() + delay > deadline:
                    break
                await anyio.sleep(delay)
            pause = self._paused_until - self._clock()
            if pause > 0:
                if self._clock() + pause > deadline:
                    raise last or UpstreamError(self.source, f"paused by Retry-After for {pause:.1f}s", counted=False)
                await anyio.sleep(pause)
            if not self.breaker.allow():
                raise last or UpstreamError(self.source, "circuit open", counted=False)
            if not await self.budget.take(max_wait=max(0.0, deadline - self._clock())):
                self.breaker.release_probe()
                raise last or UpstreamError(self.source, "request budget exhausted", counted=False)
            try:
                payload = await self._send(path, params)
            except UpstreamError as exc:
                self._record_failure(exc)
                last = exc
                if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
                    break  # our request is wrong: retrying sends the same wrong request
                continue
            self._record_success()
            if self._cache is not None:
                self._cache[key] = payload
            return payload
        assert last is not None
        raise last

    async def _send(self, path: str, params: Mapping[str, Any] | None) -> Any:
        started = time.perf_counter()
        status = "error"
        try:
            response = await self._http.get(self.base_url + path, params=params, headers=self._headers,
                                            timeout=self._timeout)
            status = str(response.status_code)
        except httpx.TimeoutException as exc:
            status = "timeout"
            raise UpstreamError(self.source, f"timeout after {self._timeout:g}s on {path}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(self.source, f"{type(exc).__name__} on {path}: {exc}") from exc
        finally:
            self.health.calls[status] = self.health.calls.get(status, 0) + 1
            if self._observe is not None:
                self._observe(self.source, status, time.perf_counter() - started)
        if response.status_code == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if wait is None:
                wait = _jupiter_reset(response.headers)
            if wait is not None:
                self._paused_until = max(self._paused_until, self._clock() + wait)
            raise UpstreamError(self.source, f"429 rate limited on {path}"
                                + (f" (retry after {wait:g}s)" if wait is not None else ""), status=429)
        if response.status_code >= 400:
            raise UpstreamError(self.source, f"HTTP {response.status_code} on {path}", status=response.status_code)
        body = response.content
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            kind = "HTML" if body.lstrip()[:1] == b"<" else "invalid JSON"
            raise UpstreamError(self.source, f"{kind} body ({len(body)} bytes) on {path}",
                                status=response.status_code) from None

    def _record_success(self) -> None:
        self.breaker.record_success()
        self.health.ok = True
        self.health.last_success = time.time()

    def _record_failure(self, exc: UpstreamError) -> None:
        self.breaker.record_failure()
        self.health.ok = False
        self.health.last_error = {"message": exc.message, "at": time.time()}
        log.warning("%s", exc)

    def record_format_error(self, exc: UpstreamFormatError, path: str, params: Mapping[str, Any] | None) -> None:
        """A 200 whose JSON is not the documented shape counts as a failure, and is not reused."""
        if self._cache is not None:
            self._cache.pop(_cache_key(path, params), None)
        self._record_failure(UpstreamError(self.source, f"unexpected shape on {path}: {exc}"))


def _cache_key(path: str, params: Mapping[str, Any] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    return path, tuple(sorted((k, str(v)) for k, v in (params or {}).items()))


def _jupiter_reset(headers: httpx.Headers) -> float | None:
    """Jupiter sends `x-ratelimit-reset` (epoch seconds) instead of Retry-After."""
    raw = headers.get("x-ratelimit-reset")
    if not raw:
        return None
    try:
        return max(0.0, min(600.0, float(raw) - time.time()))
    except ValueError:
        return None
