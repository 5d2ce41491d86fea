"""CPU time of one refresh cycle's merge and store update for N tracked tokens (default 2,000).

Each token has two pools from two sources and Jupiter token info. One cycle's measured work is
`Ingest.merge_dirty` (expire, then merge every refreshed token whose inputs changed), the change set
(`app.ingest.leader.changeset`: compare with the stored record, encode each changed record once with
orjson, detect alerts) and its commit (`MemoryStore.commit`: the new version, release versions past the
hold). Taking the new observations (`TokenState.add_pool`) is
part of the ingest, not of that figure; it is reported on its own line. Scenarios:

- worst: every token refreshed and every record really changed (prices and all windows move, and a new
  SOL/USD rate is adopted);
- realistic: 3/4 of the tokens refreshed (1,500 of 2,000: about what the default budgets allow per
  10 s cycle), half of them with new figures, half with the very same figures in new objects (as the
  parsers make them from an unchanged answer), in a cycle where the SOL price did not move: half the
  records change;
- realistic, SOL quote moved under 0.1%: the same where the SOL price read moved by less than 0.1%, so
  the adopted rate stays (CONTRACT §2) and again half the refreshed records change. This is the usual
  cycle: Jupiter's price call, which gives the SOL price, asks for a different batch of tokens each
  cycle, so it is never answered from the cache, and the price read moves a little every time;
- realistic, new SOL rate adopted: the same where the price read moved by more than 0.1% since the
  adopted rate, which is adopted: every tracked token is merged again and every record changes.

Refreshed tokens are touched in a random order, as upstream batches arrive in priority order, not in
tracking order. The store's clock advances 10 s per cycle, so versions older than its 330 s hold are
released as in a running service: the first 33 cycles run while the held versions still grow (all new
memory), the later ones in steady state. Both are reported, in CPU milliseconds (time.process_time).
The change set detects the version's alerts (as the ingest does); the random figures here cross the
alert thresholds far more often than a real market, so the count of alerts is printed too.

    python bench/bench_merge.py [N] [cycles]      # cycles per scenario, default 60
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import load_settings  # noqa: E402
from app.ingest.leader import changeset  # noqa: E402
from app.ingest.merge import TokenState  # noqa: E402
from app.ingest.scheduler import Ingest  # noqa: E402
from app.model import WSOL_MINT, PoolObservation, TokenInfo, WindowStats  # noqa: E402
from app.serving import tune_gc  # noqa: E402
from app.store.base import HOLD_S, Version  # noqa: E402
from app.store.memory import MemoryStore  # noqa: E402

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
INTERVAL_S = 10.0
WARMUP = int(HOLD_S // INTERVAL_S)  # cycles before the first version is released


def address(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(44))


def stats(rng: random.Random) -> dict[str, WindowStats]:
    return {w: WindowStats(rng.uniform(0, 1e6), rng.uniform(-50, 50), rng.randint(0, 9999),
                           rng.randint(0, 9999))
            for w in ("5m", "1h", "6h", "24h")}


def fresh(value: Any) -> Any:
    """An equal value in a new object, as a parser makes it from an upstream's JSON."""
    if isinstance(value, str):
        return value.encode().decode()
    if isinstance(value, float):
        return value * 1.0
    if isinstance(value, int):
        return value + 0 if value > 256 else value
    return value


def same_stats(old: dict[str, WindowStats]) -> dict[str, WindowStats]:
    return {w: WindowStats(fresh(s.volume_usd), fresh(s.price_change), fresh(s.buys), fresh(s.sells))
            for w, s in old.items()}


def refresh(ingest: Ingest, rng: random.Random, now: float, refreshed: int,
            changed: float) -> tuple[list[tuple[TokenState, PoolObservation]], int]:
    """New observations for `refreshed` tokens in random order, a `changed` share of them with new
    figures. Returns them (to be taken with `add_pool`, as the ingest does) and how many changed."""
    states = rng.sample(list(ingest.tokens.values()), refreshed)
    observations = []
    moved = 0
    for state in states:
        move = rng.random() < changed
        moved += move
        for pool in state.pools.values():
            fields = {f: fresh(getattr(pool, f)) for f in pool.__slots__}
            if move:
                fields.update(price_usd=pool.price_usd * rng.uniform(0.99, 1.01), stats=stats(rng))
            else:
                fields.update(stats=same_stats(pool.stats))
            observations.append((state, PoolObservation(**{**fields, "observed_at": now})))
    return observations, moved


def commit(ingest: Ingest, store: MemoryStore, token: int, now: float) -> Version | None:
    """What the ingest's commit site does, with the memory store's commit run to completion here (it
    never suspends): the cycle's records, their change set, the new version."""
    upserts, removals = ingest.merge_dirty(now)
    changes = changeset(store.latest(), upserts, removals, committed_at=now, sol_usd=ingest.sol_usd,
                        detector=ingest.alerts)
    if changes is None:
        return None
    step = store.commit(changes, token).__await__()
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the memory store's commit suspended")


def setup(n: int, rng: random.Random, now: float) -> tuple[Ingest, MemoryStore, int, list[float]]:
    settings = load_settings({}, dotenv=None)
    clock = [now]
    store = MemoryStore(clock=lambda: clock[0])
    token = store.lease.acquire("bench")
    ingest = Ingest(settings, store, clients={})
    for _ in range(n):
        mint = address(rng)
        state = ingest.tokens[mint] = TokenState(mint)
        for source in ("dexscreener", "geckoterminal"):
            state.add_pool(PoolObservation(source, address(rng), mint, now, "Name", "TKN", WSOL_MINT, "SOL",
                                           "Raydium", rng.uniform(1e-6, 1), rng.uniform(1e-9, 1e-2),
                                           rng.uniform(0, 1e6), rng.uniform(0, 1e8), rng.uniform(0, 1e8),
                                           now - rng.uniform(0, 1e6), None, stats(rng)))
        state.infos["jupiter"] = TokenInfo("jupiter", mint, now, "Name", "TKN", None, 0.1, 1e5, 1e6, 1e6)
    ingest.take_sol_quote(150.0, now)
    ingest._dirty.update(ingest.tokens)
    commit(ingest, store, token, now)  # the first commit: every token new
    return ingest, store, token, clock


def summary(label: str, part: list[float]) -> str:
    ordered = sorted(part)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return (f"  {label:40s} median {statistics.median(ordered):5.1f}  p90 {p90:5.1f}  "
            f"min {ordered[0]:5.1f}  max {ordered[-1]:5.1f}")


def run(name: str, n: int, cycles: int, refreshed: int, changed: float, sol_move: str) -> None:
    """`sol_move`: "none", "noise" (the quote moves under 0.1%: not adopted) or "adopted" (over it)."""
    rng = random.Random(1)
    now = time.time()
    ingest, store, token, clock = setup(n, rng, now)
    tune_gc()  # as python -m app does
    timings, taking, alerts = [], [], []
    for _ in range(cycles):
        now += INTERVAL_S
        clock[0] = now
        observations, moved = refresh(ingest, rng, now, refreshed, changed)
        adopted = None
        if sol_move == "noise":
            adopted = ingest.take_sol_quote(ingest.sol_usd * rng.uniform(0.9995, 1.0005), now)
        elif sol_move == "adopted":
            adopted = ingest.take_sol_quote(ingest.sol_usd * rng.choice((0.995, 1.005)), now)
            assert adopted is not None
        started = time.process_time()
        for state, pool in observations:  # the ingest's part
            state.add_pool(pool)
            ingest._dirty.add(state.address)
        taken = time.process_time()
        version = commit(ingest, store, token, now)
        timings.append((time.process_time() - taken) * 1000)
        alerts.append(len(version.alerts) if version is not None else 0)
        taking.append((taken - started) * 1000)
        expected = n if adopted is not None else moved
        assert version is not None and len(version.changed) == expected, (len(version.changed), expected)
    share = "all" if changed == 1 else f"~{changed:.0%}"
    print(f"{name}: {n} tokens, {refreshed} refreshed, {share} with new figures (CPU ms per cycle)")
    print(f"  merge + change set + commit ({statistics.median(alerts):.0f} alerts raised per cycle, median):")
    print(summary(f"cycles 1-{WARMUP}, held versions growing", timings[:WARMUP]))
    if cycles > WARMUP:
        print(summary(f"cycles {WARMUP + 1}-{cycles}, steady state", timings[WARMUP:]))
    print("  taking the observations (add_pool, not part of the figure above):")
    print(summary("all cycles", taking))


def main(n: int = 2000, cycles: int = 60) -> None:
    run("worst", n, cycles, refreshed=n, changed=1.0, sol_move="adopted")
    run("realistic", n, cycles, refreshed=n * 3 // 4, changed=0.5, sol_move="none")
    run("realistic, SOL quote moved under 0.1%", n, cycles, refreshed=n * 3 // 4, changed=0.5, sol_move="noise")
    run("realistic, new SOL rate adopted", n, cycles, refreshed=n * 3 // 4, changed=0.5, sol_move="adopted")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
