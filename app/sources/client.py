"""One upstream over the shared httpx client: budgets, pacing, cache, retries, circuit breaker, health figures.

Every request to an upstream goes through `UpstreamClient.get_json`, so the budgets it keeps are the
whole truth about what that upstream received from us.
"""

from __future__ import annotations

import logging
import re
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
MAIN = "main"  # the rate-limit group RATE_LIMITS names
_MISSING = object()


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


class Pacer:
    """At least `spacing_s` between two requests, more as the upstream's `x-ratelimit-remaining` falls.

    Keyless Jupiter caps a quick burst at about 5 calls (upstreams.md §3): calls go out one by one, never
    back to back. While more than half of the upstream's window is left, requests go at full pace; below
    that the spacing stretches (up to 10x), and with nothing left they wait for `x-ratelimit-reset`.
    """

    def __init__(self, spacing_s: float, clock: Callable[[], float]):
        self.spacing_s = spacing_s
        self._clock = clock
        self._next_at = 0.0
        self._slowdown = 1.0

    def reserve(self) -> float:
        """Take the next slot; seconds to wait for it (0 when it may go now)."""
        now = self._clock()
        slot = max(now, self._next_at)
        self._next_at = slot + self.spacing_s * self._slowdown
        return slot - now

    def give_back(self) -> None:
        """A reserved slot that was not used (the request did not go out)."""
        self._next_at = max(self._clock(), self._next_at - self.spacing_s * self._slowdown)

    def sent(self) -> None:
        """The request goes out now: the next one waits a full spacing from here, even if this one was late."""
        self._next_at = max(self._next_at, self._clock() + self.spacing_s * self._slowdown)

    def observe(self, headers: httpx.Headers) -> None:
        remaining, current = _int_header(headers, "x-ratelimit-remaining"), _int_header(headers, "x-ratelimit-current")
        if remaining is None:
            return
        limit = remaining + (current or 0)
        left = remaining / limit if limit > 0 else 0.0
        self._slowdown = 1.0 / max(0.1, min(1.0, left / 0.5))


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
        *,
        groups: Mapping[str, int] | None = None,
        group_of: Callable[[str], str] | None = None,
        spacing_s: float = 0.0,
    ):
        """`groups`: rate-limit groups besides the main one (name -> per minute), `group_of` maps a path to
        its group. `spacing_s`: the least time between two requests (0: no pacing)."""
        self.source = source
        self.base_url = base_url
        self.budgets = {MAIN: SlidingWindowBudget(per_minute, clock=clock)}
        self.budgets.update({name: SlidingWindowBudget(limit, clock=clock) for name, limit in (groups or {}).items()})
        self.breaker = CircuitBreaker(clock=clock)
        self.health = SourceHealth()
        self.pacer = Pacer(spacing_s, clock) if spacing_s > 0 else None
        self.sent = 0  # requests that went out, for the cycle's log line
        self._group_of = group_of or (lambda path: MAIN)
        self._http = http
        self._headers = dict(headers or {})
        self._timeout = timeout_s
        self._cache: TTLCache[tuple[str, tuple[tuple[str, str], ...]], Any] | None = (
            TTLCache(maxsize=4096, ttl=cache_ttl_s, timer=clock) if cache_ttl_s > 0 else None
        )
        self._paused_until: dict[str, float] = {}  # by group, set by Retry-After: nothing goes out before
        self._clock = clock
        self._observe = observe

    @property
    def budget(self) -> SlidingWindowBudget:
        """The main group's budget (the RATE_LIMITS figure)."""
        return self.budgets[MAIN]

    @property
    def circuit(self) -> str:
        return self.breaker.state

    def cached(self, path: str, params: Mapping[str, Any] | None = None) -> Any | None:
        hit = self._lookup(_cache_key(path, params))
        return None if hit is _MISSING else hit

    def _lookup(self, key: tuple[str, tuple[tuple[str, str], ...]]) -> Any:
        """The cached answer, or _MISSING. One `[]`: `key in cache` then `cache[key]` reads the clock twice
        and can see the entry expire in between (a KeyError that lost a refresh step); cachetools' own
        `get` is that same pair of lookups."""
        if self._cache is None:
            return _MISSING
        try:
            return self._cache[key]
        except KeyError:
            return _MISSING

    def calls_affordable(self, group: str = MAIN) -> int:
        """How many calls of `group` could go out now without waiting (0 while paused or the circuit is open)."""
        if self._clock() < self._paused_until.get(group, 0.0) or self.breaker.state == "open":
            return 0
        return self.budgets[group].available()

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None, max_wait: float = 30.0,
                       *, fresh: bool = False) -> Any:
        """GET base_url+path; the decoded JSON, from cache when an identical call was answered within the TTL
        (unless `fresh`: a circuit probe must reach the upstream).

        Waits at most `max_wait` seconds in total for budget, pacing, `Retry-After` and backoff; raises
        UpstreamError when no usable answer came.
        """
        key = _cache_key(path, params)
        if not fresh:
            hit = self._lookup(key)
            if hit is not _MISSING:
                return hit
        group = self._group_of(path)
        budget = self.budgets.get(group, self.budget)
        deadline = self._clock() + max_wait
        last: UpstreamError | None = None
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                delay = backoff_delay(attempt)
                if self._clock() + delay > deadline:
                    break
                await anyio.sleep(delay)
            pause = self._paused_until.get(group, 0.0) - self._clock()
            if pause > 0:
                if self._clock() + pause > deadline:
                    raise last or UpstreamError(self.source, f"paused by Retry-After for {pause:.1f}s", counted=False)
                await anyio.sleep(pause)
            if not self.breaker.allow():
                raise last or UpstreamError(self.source, "circuit open", counted=False)
            # The pacing slot first, the budget last: a request that will not go out spends no budget (a
            # shared budget cannot give a unit back), and the budget's stamp is taken just before the send.
            if self.pacer is not None:
                wait = self.pacer.reserve()
                if self._clock() + wait > deadline:
                    self.pacer.give_back()
                    self.breaker.release_probe()
                    raise last or UpstreamError(self.source, "paced: no slot in time", counted=False)
                if wait > 0:
                    await anyio.sleep(wait)
            if not await budget.take(max_wait=max(0.0, deadline - self._clock())):
                if self.pacer is not None:
                    self.pacer.give_back()
                self.breaker.release_probe()
                raise last or UpstreamError(self.source, f"request budget exhausted ({group})", counted=False)
            try:
                payload = await self._send(path, params, group)
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

    async def _send(self, path: str, params: Mapping[str, Any] | None, group: str) -> Any:
        started = time.perf_counter()
        status = "error"
        where = describe(path)
        self.sent += 1
        if self.pacer is not None:
            self.pacer.sent()
        try:
            response = await self._http.get(self.base_url + path, params=params, headers=self._headers,
                                            timeout=self._timeout)
            status = str(response.status_code)
        except httpx.TimeoutException as exc:
            status = "timeout"
            raise UpstreamError(self.source, f"timeout after {self._timeout:g}s on {where}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(self.source, f"{type(exc).__name__} on {where}: {exc}") from exc
        finally:
            self.health.calls[status] = self.health.calls.get(status, 0) + 1
            if self._observe is not None:
                self._observe(self.source, status, time.perf_counter() - started)
            if log.isEnabledFor(logging.DEBUG):  # the URL (up to 100 mints) only at debug: at info it was
                log.debug("%s GET %s%s %s", self.source, path, _query(params), status)  # nearly the whole log
        if self.pacer is not None:
            self.pacer.observe(response.headers)
        if response.status_code == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if wait is None:
                wait = _jupiter_reset(response.headers)
            if wait is not None:
                until = max(self._paused_until.get(group, 0.0), self._clock() + wait)
                self._paused_until[group] = until
            raise UpstreamError(self.source, f"429 rate limited on {where}"
                                + (f" (retry after {wait:g}s)" if wait is not None else ""), status=429)
        if response.status_code >= 400:
            raise UpstreamError(self.source, f"HTTP {response.status_code} on {where}", status=response.status_code)
        if _int_header(response.headers, "x-ratelimit-remaining") == 0:
            # The window is spent (others share it: per IP or organisation): wait for its reset.
            wait = _jupiter_reset(response.headers)
            if wait:
                self._paused_until[group] = max(self._paused_until.get(group, 0.0), self._clock() + wait)
        body = response.content
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            kind = "HTML" if body.lstrip()[:1] == b"<" else "invalid JSON"
            raise UpstreamError(self.source, f"{kind} body ({len(body)} bytes) on {where}",
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
        self._record_failure(UpstreamError(self.source, f"unexpected shape on {describe(path)}: {exc}"))


_ADDRESS_LIST = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}(?:,[1-9A-HJ-NP-Za-km-z]{32,44})*")


def describe(path: str) -> str:
    """A path for messages and logs, its address lists shortened: `/tokens/v1/solana/{30 addresses}`."""

    def count(match: re.Match[str]) -> str:
        n = match.group(0).count(",") + 1
        return match.group(0) if n == 1 else f"{{{n} addresses}}"

    return _ADDRESS_LIST.sub(count, path)


def _query(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    return "?" + "&".join(f"{k}={v}" for k, v in params.items())


def _cache_key(path: str, params: Mapping[str, Any] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    return path, tuple(sorted((k, str(v)) for k, v in (params or {}).items()))


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _jupiter_reset(headers: httpx.Headers) -> float | None:
    """Jupiter sends `x-ratelimit-reset` (epoch seconds) instead of Retry-After."""
    raw = headers.get("x-ratelimit-reset")
    if not raw:
        return None
    try:
        return max(0.0, min(600.0, float(raw) - time.time()))
    except ValueError:
        return None
