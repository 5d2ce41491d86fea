"""Discovery: which trending and new-token lists each upstream is asked for, round after round.

`plan(source, round)` is the list of requests a round sends; the budget share discovery keeps is derived
from these same lists (`calls_per_minute`), so the reservation is what is actually sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.ingest.context import IngestContext, Request
from app.ingest.report import CycleReport
from app.sources import dexscreener, geckoterminal, jupiter
from app.sources.client import MAIN, UpstreamError

_JUPITER_COMBOS = [(c, i) for i in ("1h", "24h", "5m", "6h") for c in jupiter.DISCOVERY_CATEGORIES]


def plan(source: str, r: int) -> list[Request]:
    """The requests of discovery round `r` for `source`.

    DexScreener: the three profile/boost feeds (its 60/min list group). GeckoTerminal: page 1 of some
    trending duration and of new pools every round; deeper pages rotate, so every page of every list is
    visited over the rounds. Jupiter: two top lists in rotation and the recent list; the first round casts
    the widest net (every 1h top list).
    """
    if source == "dexscreener":
        return [(path, {}) for path in dexscreener.DISCOVERY_PATHS]
    if source == "geckoterminal":
        durations = geckoterminal.DURATIONS
        duration = durations[r % len(durations)]
        return [geckoterminal.trending_request(page=1, duration=duration),
                geckoterminal.new_pools_request(page=1 if r % 2 == 0 else 2 + (r // 2) % 9),
                geckoterminal.trending_request(page=2 + (r // len(durations)) % 9, duration=duration)]
    if source == "jupiter":
        if r == 0:
            return [jupiter.top_request(c, "1h") for c in jupiter.DISCOVERY_CATEGORIES] + [jupiter.recent_request()]
        first = (r * 2) % len(_JUPITER_COMBOS)
        return [jupiter.top_request(*_JUPITER_COMBOS[first]), jupiter.top_request(*_JUPITER_COMBOS[first + 1]),
                jupiter.recent_request()]
    raise ValueError(f"unknown source {source!r}")


def calls_per_minute(source: str, discovery_interval_s: float, refresh_interval_s: float) -> float:
    """What discovery sends per minute from the main rate-limit group (RATE_LIMITS' figure): its steady
    rounds' requests, rounds being at most one per cycle. DexScreener's feeds are another group: 0."""
    per_round = sum(1 for path, _ in plan(source, 1) if _group(source, path) == MAIN)
    return per_round * 60.0 / max(discovery_interval_s, refresh_interval_s)


def _group(source: str, path: str) -> str:
    return dexscreener.rate_group(path) if source == "dexscreener" else MAIN


async def discover(ingest: IngestContext, source: str, report: CycleReport, r: int) -> None:
    """Send round `r`'s requests and track what they name. A request is skipped, not waited for, when
    discovery's share has no room for it now (or, for DexScreener's 60/min feeds, their group has none):
    the rounds rotate, so a skipped list comes up again."""
    client = ingest.clients[source]
    parse = _parser(source, ingest.clock())
    requests = plan(source, r)
    turn = r % len(requests)  # each round starts one further, so a request skipped for lack of room
    for path, params in requests[turn:] + requests[:turn]:  # is not always the same one
        group = _group(source, path)
        if group != MAIN:
            if client.calls_affordable(group) < 1:
                continue
        elif not ingest.discovery_allows(source):
            continue
        try:
            parsed = await ingest.call(source, (path, params), parse)
        except UpstreamError as exc:
            report.errors.append(str(exc))
            continue
        now = ingest.clock()
        if source == "dexscreener":
            ingest.track(parsed)
        elif source == "geckoterminal":
            ingest.take_pools(source, parsed, now)
        else:
            ingest.take_infos(parsed, now, replace_stats=True)


def _parser(source: str, now: float) -> Callable[[Any], Any]:
    if source == "dexscreener":
        return dexscreener.parse_discovery
    if source == "geckoterminal":
        return lambda payload: geckoterminal.parse_pools(payload, observed_at=now)
    return lambda payload: jupiter.parse_tokens(payload, observed_at=now)
