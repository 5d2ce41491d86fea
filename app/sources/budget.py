"""Request budgets, backoff and circuit breaking: what keeps us inside every upstream's limits.

All three are per upstream and shared by every call to it, retries included.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

# Our stamp is taken before the request leaves; the upstream counts its arrival. A little slack keeps
# "never more than N in any 60 s" true on their clock too.
WINDOW_SLACK_S = 0.5


class SlidingWindowBudget:
    """At most `per_minute` requests in any sliding window of `window_s` seconds (not per calendar minute)."""

    def __init__(self, per_minute: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.window_s = window_s + WINDOW_SLACK_S
        self._clock = clock
        self._sent: deque[float] = deque()

    def _purge(self, now: float) -> None:
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()

    def used(self) -> int:
        """Requests sent in the last window."""
        self._purge(self._clock())
        return len(self._sent)

    def available(self) -> int:
        return max(0, self.per_minute - self.used())

    def wait_time(self) -> float:
        """Seconds until one more request may be sent (0 when it may go now)."""
        now = self._clock()
        self._purge(now)
        if len(self._sent) < self.per_minute:
            return 0.0
        return self._sent[len(self._sent) - self.per_minute] + self.window_s - now

    async def take(self, max_wait: float = float("inf")) -> bool:
        """Wait for room and spend one request; False (nothing spent) if that would take over `max_wait`."""
        deadline = self._clock() + max_wait
        while True:
            delay = self.wait_time()
            if delay <= 0:
                self._sent.append(self._clock())
                return True
            if self._clock() + delay > deadline:
                return False
            await anyio.sleep(delay + 0.001)


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 20.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: a random delay in [base/2, min(cap, base * 2**attempt)]."""
    high = min(cap, base * (2 ** attempt))
    return (rng or random).uniform(min(base / 2, high), high)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, 600.0))


@dataclass
class CircuitBreaker:
    """Opens after `threshold` failures in a row; after `cooldown_s` lets one probe through to close it.

    The cooldown doubles (up to `max_cooldown_s`) each time a probe fails, so a dead upstream costs
    one request now and then rather than a storm.
    """

    threshold: int = 5
    cooldown_s: float = 15.0
    max_cooldown_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    current_cooldown: float = 0.0
    probing: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.current_cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a request go now? In half-open state only one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.current_cooldown = 0.0
        self.probing = False

    def record_failure(self) -> None:
        self.failures += 1
        if self.probing or self.opened_at is not None:
            self.current_cooldown = min(self.max_cooldown_s, max(self.cooldown_s, self.current_cooldown * 2))
            self.opened_at = self.clock()
        elif self.failures >= self.threshold:
            self.current_cooldown = self.cooldown_s
            self.opened_at = self.clock()
        self.probing = False

    def release_probe(self) -> None:
        """A probe that never went out (no budget) gives its place back."""
        self.probing = False
