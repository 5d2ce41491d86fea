"""The request budget, backoff and circuit breaker: what keeps the service inside upstream limits."""

import random

import pytest

from app.sources.budget import (
    WINDOW_SLACK_S,
    CircuitBreaker,
    SlidingWindowBudget,
    backoff_delay,
    retry_after_seconds,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_budget_never_allows_more_than_limit_in_any_sliding_window():
    clock = FakeClock()
    budget = SlidingWindowBudget(10, clock=clock)
    sent = []
    rng = random.Random(7)
    for _ in range(5000):
        clock.now += rng.uniform(0, 3)
        if await budget.take(max_wait=0):
            sent.append(clock.now)
    assert len(sent) > 100
    # Every window of 60 s (sliding, not calendar) holds at most 10 requests.
    j = 0
    for i, start in enumerate(sent):
        while j < len(sent) and sent[j] < start + 60.0:
            j += 1
        assert j - i <= 10


@pytest.mark.anyio
async def test_budget_window_is_sliding_not_calendar_minute():
    clock = FakeClock()
    budget = SlidingWindowBudget(2, clock=clock)
    assert await budget.take(max_wait=0) and await budget.take(max_wait=0)
    assert not await budget.take(max_wait=0)
    clock.now += 59.0
    assert not await budget.take(max_wait=0)
    assert budget.wait_time() == pytest.approx(1.0 + WINDOW_SLACK_S)
    clock.now += 1.0 + WINDOW_SLACK_S
    assert await budget.take(max_wait=0)
    assert budget.used() == 1


@pytest.mark.anyio
async def test_take_gives_up_without_spending_when_wait_exceeds_max():
    clock = FakeClock()
    budget = SlidingWindowBudget(1, clock=clock)
    assert await budget.take()
    assert not await budget.take(max_wait=5.0)
    assert budget.used() == 1


def test_backoff_grows_exponentially_with_jitter_and_cap():
    rng = random.Random(1)
    for attempt in range(8):
        delays = [backoff_delay(attempt, base=1.0, cap=20.0, rng=rng) for _ in range(200)]
        assert max(delays) <= min(20.0, 2 ** attempt) + 1e-9
        assert min(delays) >= 0.5 - 1e-9
        assert len(set(delays)) > 100  # jitter: no two clients in lockstep
    assert max(backoff_delay(10, rng=rng) for _ in range(100)) > 10


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 30) == pytest.approx(30.0)
    assert retry_after_seconds("99999") == 600.0


def test_circuit_opens_after_repeated_failures_and_probes_to_close():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=10.0, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10.0
    assert breaker.state == "half_open"
    assert breaker.allow()          # one probe
    assert not breaker.allow()      # and only one
    breaker.record_failure()        # probe failed: open again, longer
    assert breaker.state == "open"
    clock.now += 10.0
    assert breaker.state == "open"
    clock.now += 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()
