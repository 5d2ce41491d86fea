"""The independent-market check: every record, figure by figure, against the market's truth (CONTRACT §2).

A static market (no ticks) is served over loopback and the whole service runs against it. Once the
service has converged, each record is compared with what CONTRACT §2 says it must be, computed here from
the market as the upstreams present it (`app.demo.shapes` renders exactly what each upstream serves) and
never from the service's own parsers or merge:

- a token's pools are its *base* pools that DexScreener (`ds_visible`) or GeckoTerminal (`gt_visible`)
  shows; quote-side pairs are not its pools;
- a pool shown by both may carry either source's figures (the fresher observation wins, and both keep
  refreshing), but never a mix of the two within one pool: every per-pool choice of source is enumerated
  and the record must match one of them as a whole;
- volume, buys, sells and liquidity are summed over the pools, unknown or negative figures ignored;
  the main pool (most liquidity) gives the price, pair address, creation time, protocol and the price
  changes; market cap and FDV fall back main pool -> Jupiter -> GeckoTerminal (never market cap from FDV);
- only a token with no pool anywhere takes Jupiter's token-level figures;
- every `*_sol` figure is the (rounded) USD figure over the adopted SOL/USD rate (/health's `sol_usd`),
  which is a price read from the upstreams;
- `sources` is ordered dexscreener, geckoterminal, jupiter and names exactly the upstreams used.

Figures are rounded by the service (CONTRACT §2): a USD amount must be on the cent grid and within half a
cent of the market's, a percent change likewise on the hundredth, a price within half a unit of its 10th
significant digit (and have no more digits), a `*_sol` figure within the rounding of its USD figure over
the rate plus half a unit of its own 10th digit. On top of that, rel 1e-9 only because sums may be added
in another order; everything else is exact. A check that fails because of a service bug is marked
xfail(strict=True) with the bug named.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import pytest

from app.demo import shapes
from app.demo.market import USDC_MINT, WSOL_MINT, Market, Pool, Token
from app.demo.server import GT_MAX_PAGE, GT_PAGE_SIZE, serve_market
from tests.support import fast_settings, running_service, wait_for

SEED = 3
N_TOKENS = 80
MAIN_QUOTES = {WSOL_MINT, USDC_MINT, "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"}  # SOL, USDC, USDT
SOURCES = ("dexscreener", "geckoterminal", "jupiter")
# record window -> DexScreener / GeckoTerminal key
WINDOWS = (("5m", "m5"), ("1h", "h1"), ("6h", "h6"), ("24h", "h24"))
STAT_KEYS = ("volume_usd", "volume_sol", "price_change", "buys", "sells")
REL = 1e-9
SIG = 5e-10  # half a unit of the 10th significant digit, relative

# CONTRACT §2: one display name per DEX, whichever upstream reported the pool.
DISPLAY = {
    "pumpfun": "Pump.fun", "pump-fun": "Pump.fun", "pumpswap": "PumpSwap", "raydium": "Raydium",
    "raydium-clmm": "Raydium CLMM", "raydium-cpmm": "Raydium CPMM", "meteora": "Meteora",
    "meteora-dlmm": "Meteora DLMM", "orca": "Orca",
}

TOP_FIELDS = (
    "token_name", "token_ticker", "price_sol", "market_cap_sol", "volume_sol", "liquidity_sol",
    "transaction_count", "price_1hr_change", "protocol", "price_usd", "market_cap_usd", "fdv_usd",
    "liquidity_usd", "pair_address", "created_at", "image_url",
)
STAT_FIELDS = tuple(f"stats.{w}.{k}" for w, _ in WINDOWS for k in STAT_KEYS)
ALL_FIELDS = (*TOP_FIELDS, *STAT_FIELDS, "sources")
CENT_FIELDS = frozenset({"liquidity_usd", "market_cap_usd", "fdv_usd", "price_1hr_change",
                         *(f"stats.{w}.{k}" for w, _ in WINDOWS for k in ("volume_usd", "price_change"))})
# *_sol field -> the USD field it is derived from
SOL_OF = {"price_sol": "price_usd", "market_cap_sol": "market_cap_usd", "liquidity_sol": "liquidity_usd",
          "volume_sol": "stats.24h.volume_usd",
          **{f"stats.{w}.volume_sol": f"stats.{w}.volume_usd" for w, _ in WINDOWS}}

GROUPS: dict[str, tuple[str, ...]] = {
    "pools_and_sums": ("liquidity_usd", "liquidity_sol", "transaction_count", "volume_sol",
                       *(f"stats.{w}.{k}" for w, _ in WINDOWS
                         for k in ("volume_usd", "volume_sol", "buys", "sells"))),
    "main_pool": ("price_usd", "price_sol", "pair_address", "created_at", "protocol", "price_1hr_change",
                  *(f"stats.{w}.price_change" for w, _ in WINDOWS)),
    "market_cap_and_fdv": ("market_cap_usd", "market_cap_sol", "fdv_usd"),
    "sources": ("sources",),
    "identity": ("token_name", "token_ticker", "image_url"),
}


# Arranged cases the service gets wrong today: their tokens are left out of the all-records checks (so
# those keep guarding everything else) and their own case test is xfail(strict=True). When a bug is fixed
# the case test XPASSes and fails: remove its entry here.
KNOWN_BUGS: dict[str, str] = {}  # case -> reason, marked xfail(strict=True) until fixed

# ----------------------------------------------------------------------------------------------------
# what each upstream shows of one pool
# ----------------------------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    """A known non-negative figure, or None (null, negative, non-numeric: unknown for that pool)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def _signed(value: Any) -> float | None:
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _epoch(iso_text: str) -> float:
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Obs:
    """One pool as one upstream serves it."""

    source: str
    pool: str
    quote: str
    price_usd: float | None
    price_native: float | None  # in the quote token
    liquidity: float | None
    market_cap: float | None
    fdv: float | None
    created: float | None  # epoch seconds
    protocol: str
    windows: dict[str, tuple[float | None, float | None, int | None, int | None]]  # vol, change, buys, sells
    image: str | None


def ds_obs(m: Market, p: Pool) -> Obs:
    pair = shapes.ds_pair(m, p)
    labels = pair.get("labels") or []
    dex = pair["dexId"]
    protocol = DISPLAY.get(f"{dex}-{labels[0].lower()}" if labels else dex) or DISPLAY.get(dex) or dex.title()
    liquidity = _num((pair.get("liquidity") or {}).get("usd"))
    if liquidity == 0 and dex == "pumpfun":
        liquidity = None  # a bonding-curve pair's 0 is "not reported" (upstreams.md §1 quirks)
    windows = {}
    for w, key in WINDOWS:
        txns = (pair.get("txns") or {}).get(key) or {}
        windows[w] = (_num((pair.get("volume") or {}).get(key)),
                      _signed((pair.get("priceChange") or {}).get(key)), txns.get("buys"), txns.get("sells"))
    created = pair.get("pairCreatedAt")
    return Obs(
        source="dexscreener", pool=pair["pairAddress"], quote=pair["quoteToken"]["address"],
        price_usd=_num(pair.get("priceUsd")), price_native=_num(pair.get("priceNative")), liquidity=liquidity,
        market_cap=_num(pair.get("marketCap")), fdv=_num(pair.get("fdv")),
        created=created / 1000.0 if created is not None else None, protocol=protocol, windows=windows,
        image=(pair.get("info") or {}).get("imageUrl"),
    )


def gt_obs(m: Market, p: Pool) -> Obs:
    """GeckoTerminal's pool, read for its meme token: the base, or the quote when GeckoTerminal oriented the
    pool the other way round (SOL or USDC as base). Then the token's price is the quote's, its buys and
    sells are the base's sells and buys, and GeckoTerminal's changes, market cap and FDV (the base's) say
    nothing about it."""
    doc = shapes.gt_pool(m, p)
    a = doc["attributes"]
    rel = doc["relationships"]
    dex = rel["dex"]["data"]["id"]
    base, quote = (rel[side]["data"]["id"].removeprefix("solana_") for side in ("base_token", "quote_token"))
    flipped = base in MAIN_QUOTES and quote not in MAIN_QUOTES
    windows = {}
    for w, key in WINDOWS:
        txns = a["transactions"].get(key) or {}
        buys, sells = (txns.get("sells"), txns.get("buys")) if flipped else (txns.get("buys"), txns.get("sells"))
        change = None if flipped else _signed(a["price_change_percentage"].get(key))
        windows[w] = (_num(a["volume_usd"].get(key)), change, buys, sells)
    token = m.by_mint[quote if flipped else base]
    image = shapes.gt_included_token(m, token)["attributes"]["image_url"]
    if flipped:
        price_usd, price_native = _num(a["quote_token_price_usd"]), _num(a["quote_token_price_base_token"])
        market_cap = fdv = None
    else:
        price_usd, price_native = _num(a["base_token_price_usd"]), _num(a["base_token_price_quote_token"])
        market_cap, fdv = _num(a["market_cap_usd"]), _num(a["fdv_usd"])
    return Obs(
        source="geckoterminal", pool=a["address"], quote=base if flipped else quote,
        price_usd=price_usd, price_native=price_native, liquidity=_num(a["reserve_in_usd"]),
        market_cap=market_cap, fdv=fdv, created=_epoch(a["pool_created_at"]), protocol=DISPLAY.get(dex) or dex.title(),
        windows=windows, image=image if "://" in image else None,
    )


# ----------------------------------------------------------------------------------------------------
# expected records
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OneOf:
    """Any of these values is right (the contract leaves the choice open)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Native:
    """price_usd = main pool's priceNative (quote SOL) x SOL/USD; price_sol is priceNative."""

    price_native: float


@dataclass(frozen=True)
class SourcesExpect:
    required: frozenset[str]  # upstreams whose figures the record must use
    optional: frozenset[str]  # token-level upstreams that may supply name/ticker/image
    image_needs_token_level: bool  # no pool of this reading has an image: an image came from `optional`


@dataclass
class Expect:
    label: str
    fields: dict[str, Any] = field(default_factory=dict)


def token_level(m: Market, t: Token) -> tuple[dict | None, dict | None]:
    """(Jupiter Tokens v2 item, GeckoTerminal token attributes) as served, or None where unknown."""
    jup = shapes.jup_token(m, t) if t.jup_known else None
    gt = None
    if shapes.gt_known(m, t):
        gt = shapes.gt_token(m, t, shapes.gt_token_pools(m, t, single=True))["attributes"]
    return jup, gt


def visible_pools(m: Market, t: Token) -> list[Pool]:
    return [p for p in t.pools if m.ds_visible(p) or m.gt_visible(p)]


def _sum(values: Iterable[Any]) -> Any:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _fallbacks(main_value: float | None, jup_value: float | None, gt_value: Any,
               used: set[str]) -> float | None:
    if main_value is not None:
        return main_value
    if jup_value is not None:
        used.add("jupiter")
        return jup_value
    gt_value = _num(gt_value)
    if gt_value is not None:
        used.add("geckoterminal")
        return gt_value
    return None


def expectations(m: Market, t: Token) -> list[Expect]:
    """Every record CONTRACT §2 allows for token `t` given what the upstreams serve."""
    jup, gt = token_level(m, t)
    token_images = {}
    if jup is not None and jup.get("icon"):
        token_images["jupiter"] = jup["icon"]
    if gt is not None and "://" in (gt.get("image_url") or ""):
        token_images["geckoterminal"] = gt["image_url"]
    pools = visible_pools(m, t)
    if not pools:
        return [_jupiter_standin(m, t, jup, gt, token_images)] if jup is not None else []
    options = []
    for p in pools:
        opts = []
        if m.ds_visible(p):
            opts.append(ds_obs(m, p))
        if m.gt_visible(p):
            opts.append(gt_obs(m, p))
        options.append(opts)
    out = []
    for combo in itertools.product(*options):
        # CONTRACT §2: the most liquid pool quoted in SOL, USDC or USDT; only without one, of any quote.
        candidates = [o for o in combo if o.quote in MAIN_QUOTES] or list(combo)
        known = [o for o in candidates if o.liquidity is not None]
        mains = [max(known, key=lambda o: o.liquidity)] if known else candidates
        for main in mains:
            out.append(_pool_record(t, combo, main, jup, gt, token_images))
    return out


def _pool_record(t: Token, combo: tuple[Obs, ...], main: Obs, jup: dict | None, gt: dict | None,
                 token_images: dict[str, str]) -> Expect:
    used = {o.source for o in combo}
    f: dict[str, Any] = {"token_name": t.name, "token_ticker": t.symbol}
    if main.price_usd is not None:
        f["price_usd"] = main.price_usd
    elif main.quote == WSOL_MINT and main.price_native is not None:
        f["price_usd"] = Native(main.price_native)
    else:
        f["price_usd"] = None
    f["liquidity_usd"] = _sum(o.liquidity for o in combo)
    for w, _ in WINDOWS:
        f[f"stats.{w}.volume_usd"] = _sum(o.windows[w][0] for o in combo)
        f[f"stats.{w}.price_change"] = main.windows[w][1]
        f[f"stats.{w}.buys"] = _sum(o.windows[w][2] for o in combo)
        f[f"stats.{w}.sells"] = _sum(o.windows[w][3] for o in combo)
    buys, sells = f["stats.24h.buys"], f["stats.24h.sells"]
    f["transaction_count"] = buys + sells if buys is not None and sells is not None else None
    f["price_1hr_change"] = f["stats.1h.price_change"]
    f["market_cap_usd"] = _fallbacks(main.market_cap, jup and jup["mcap"], gt and gt["market_cap_usd"], used)
    f["fdv_usd"] = _fallbacks(main.fdv, jup and jup["fdv"], gt and gt["fdv_usd"], used)
    f["pair_address"] = main.pool
    f["created_at"] = main.created
    f["protocol"] = main.protocol
    images = {o.image for o in combo if o.image} | set(token_images.values())
    f["image_url"] = OneOf(tuple(images)) if images else None
    f["sources"] = SourcesExpect(frozenset(used), frozenset(token_images),
                                 image_needs_token_level=not any(o.image for o in combo))
    label = ", ".join(f"{o.pool[:6]}:{o.source[:2]}" for o in combo) + f"; main {main.pool[:6]}"
    return Expect(label, f)


def _jupiter_standin(m: Market, t: Token, jup: dict, gt: dict | None, token_images: dict[str, str]) -> Expect:
    """No pool anywhere: Jupiter's token-level figures stand in (CONTRACT §2)."""
    used = {"jupiter"}
    f: dict[str, Any] = {"token_name": t.name, "token_ticker": t.symbol, "price_usd": _num(jup["usdPrice"]),
                         "liquidity_usd": _num(jup["liquidity"])}
    price24 = shapes.jup_price(m, t)["priceChange24h"] if m.jup_priced(t) else None
    for w, _ in WINDOWS:
        s = jup[f"stats{w}"]
        if s is None:
            f[f"stats.{w}.volume_usd"] = f[f"stats.{w}.buys"] = f[f"stats.{w}.sells"] = None
            # Price v3's priceChange24h is Jupiter's 24h change too: either null or it.
            f[f"stats.{w}.price_change"] = OneOf((None, price24)) if w == "24h" else None
            continue
        f[f"stats.{w}.volume_usd"] = s["buyVolume"] + s["sellVolume"]
        f[f"stats.{w}.price_change"] = s["priceChange"]
        f[f"stats.{w}.buys"] = s["numBuys"]
        f[f"stats.{w}.sells"] = s["numSells"]
    buys, sells = f["stats.24h.buys"], f["stats.24h.sells"]
    f["transaction_count"] = buys + sells if buys is not None and sells is not None else None
    f["price_1hr_change"] = f["stats.1h.price_change"]
    f["market_cap_usd"] = _fallbacks(None, jup["mcap"], gt and gt["market_cap_usd"], used)
    f["fdv_usd"] = _fallbacks(None, jup["fdv"], gt and gt["fdv_usd"], used)
    f["pair_address"] = None
    # Not fixed by the contract for a pool-less token: null, or Jupiter's (upstreams.md §5 mapping).
    first = jup.get("firstPool")
    f["created_at"] = OneOf((None, _epoch(first["createdAt"]) if first else None))
    launchpad = jup.get("launchpad")
    graduated = jup.get("graduatedPool") is not None or jup.get("graduatedAt") is not None
    # The launchpad is its protocol only until it graduated (then it trades elsewhere).
    f["protocol"] = OneOf((None, DISPLAY.get(launchpad.replace(".", "-"), launchpad.title())
                                 if launchpad and not graduated else None))
    f["image_url"] = OneOf(tuple(token_images.values())) if token_images else None
    f["sources"] = SourcesExpect(frozenset(used), frozenset(token_images) - used,
                                 image_needs_token_level=True)
    return Expect("jupiter stand-in", f)


# ----------------------------------------------------------------------------------------------------
# comparing
# ----------------------------------------------------------------------------------------------------
def get(record: dict, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value[part]
    return value


def on_grid(value: float, rule: str) -> bool:
    """Whether a figure has no more digits than its rounding keeps."""
    if rule == "cents":
        return round(value, 2) == value
    return float(f"{value:.10g}") == value


def rule_of(name: str) -> str | None:
    """How the service rounds a field: "cents" (2 decimals), "sig10" (10 significant digits), None (exact)."""
    if name in CENT_FIELDS:
        return "cents"
    if name == "price_usd" or name in SOL_OF:
        return "sig10"
    return None


def _same(actual: Any, expected: Any, rule: str | None = None, slack: float = 0.0) -> bool:
    """`actual` is `expected` as the service rounds it (`rule`), give or take `slack` (absolute) more."""
    if isinstance(expected, OneOf):
        return any(_same(actual, v, rule, slack) for v in expected.values)
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return False
    if isinstance(expected, int) and not isinstance(expected, bool) and rule is None:
        return isinstance(actual, int) and actual == expected
    if isinstance(expected, (int, float)):
        if not isinstance(actual, (int, float)):
            return False
        if rule is not None and not on_grid(actual, rule):
            return False
        bound = REL * abs(expected) + slack
        bound += 0.005 if rule == "cents" else SIG * abs(expected) if rule == "sig10" else 0.0
        return abs(actual - expected) <= bound * (1 + 1e-12)
    return actual == expected


def sol_slack(usd_rule: str | None, usd: float, sol_usd: float) -> float:
    """How far a `*_sol` figure may be from the market's USD figure over the rate before its own rounding:
    the service divides its rounded USD figure (CONTRACT §2)."""
    rounding = 0.005 if usd_rule == "cents" else SIG * abs(usd)
    return (rounding + REL * abs(usd)) / sol_usd


def mismatches(record: dict, exp: Expect, fields: Iterable[str], sol: float) -> list[str]:
    """Where `record` is not the reading `exp`, at the adopted SOL/USD rate `sol`."""
    out = []
    for name in fields:
        actual = get(record, name)
        expected = exp.fields.get(name)
        if name == "sources":
            problem = _sources_problem(record, expected)
            if problem:
                out.append(f"sources {actual!r}: {problem}")
            continue
        if name == "created_at":
            try:
                actual_value = _epoch(actual) if actual is not None else None
            except ValueError:
                out.append(f"created_at {actual!r} is not ISO 8601")
                continue
            if actual is not None and not actual.endswith("Z"):
                out.append(f"created_at {actual!r} is not UTC with a Z")
            if not _same(actual_value, expected):
                out.append(f"created_at {actual!r} != {expected!r}")
            continue
        slack = 0.0
        if name in SOL_OF or name == "price_usd":
            usd_name = SOL_OF.get(name, name)
            usd_expected = exp.fields.get(usd_name)
            if isinstance(usd_expected, Native):  # price_usd is priceNative x rate, price_sol that over the rate
                native = usd_expected.price_native
                expected = native * sol if name == "price_usd" else native
                slack = SIG * abs(native) if name == "price_sol" else 0.0
            elif name in SOL_OF:
                expected = None if usd_expected is None else usd_expected / sol
                if isinstance(usd_expected, (int, float)):
                    slack = sol_slack(rule_of(usd_name), usd_expected, sol)
        if not _same(actual, expected, rule_of(name), slack):
            out.append(f"{name} {actual!r} != expected {expected!r}")
    return out


def _sources_problem(record: dict, exp: SourcesExpect) -> str | None:
    got = record["sources"]
    if got != [s for s in SOURCES if s in got] or len(set(got)) != len(got):
        return "not in the order dexscreener, geckoterminal, jupiter"
    have = set(got)
    if not exp.required <= have:
        return f"missing {sorted(exp.required - have)} (figures used from them)"
    if not have <= exp.required | exp.optional:
        return f"names {sorted(have - exp.required - exp.optional)}, whose data the record cannot use"
    if record["image_url"] is not None and exp.image_needs_token_level and not have & exp.optional \
            and not exp.required & {"jupiter", "geckoterminal"}:
        return "the image can only have come from a token-level source, which is not listed"
    return None


def best_match(record: dict, exps: list[Expect], fields: Iterable[str],
               sol: float) -> tuple[Expect | None, list[str]]:
    """The expectation the record matches on `fields` (no mismatch), else the closest one and its diff."""
    fields = tuple(fields)
    best: tuple[Expect | None, list[str]] = (None, ["no expectation: the market says no upstream shows it"])
    for exp in exps:
        diff = mismatches(record, exp, fields, sol)
        if not diff:
            return exp, []
        if best[0] is None or len(diff) < len(best[1]):
            best = (exp, diff)
    return best


# ----------------------------------------------------------------------------------------------------
# what the service has asked each upstream, read from the market's request log
# ----------------------------------------------------------------------------------------------------
class Exposure:
    """Per source and mint, when the service last had that token's data from that upstream (monotonic
    time of the request); and which GeckoTerminal pools have been served to it at all."""

    def __init__(self, m: Market) -> None:
        self.m = m
        self.pos = {s: 0 for s in SOURCES}
        self.asked: dict[str, dict[str, float]] = {s: {} for s in SOURCES}
        self.gt_pools_served: set[str] = set()
        self.pool_base = {a: p.base.mint for a, p in m.pools.items()}

    def scan(self) -> None:
        for source in SOURCES:
            log = self.m.requests[source]
            i = self.pos[source]
            while i < len(log):
                at, path, status = log[i]
                if status == 0:
                    break  # still in flight: read it on the next scan
                if status == 200:
                    readers = {"dexscreener": self._ds, "geckoterminal": self._gt, "jupiter": self._ju}
                    readers[source](at, path)
                i += 1
            self.pos[source] = i

    def _mark(self, source: str, mints: Iterable[str], at: float) -> None:
        for mint in mints:
            self.asked[source][mint] = at

    def _ds(self, at: float, raw: str) -> None:
        path = raw.split("?", 1)[0]
        for prefix in ("/tokens/v1/solana/", "/token-pairs/v1/solana/", "/latest/dex/tokens/"):
            if path.startswith(prefix):
                self._mark("dexscreener", path[len(prefix):].split(","), at)
        if path.startswith("/latest/dex/pairs/solana/"):  # pools by address: their tokens were refreshed
            ids = path.removeprefix("/latest/dex/pairs/solana/").split(",")
            self._mark("dexscreener", [self.pool_base[i] for i in ids if i in self.pool_base], at)

    def _gt(self, at: float, raw: str) -> None:
        path, _, query = raw.partition("?")
        q = parse_qs(query)
        page = int(q.get("page", ["1"])[0]) if q.get("page", ["1"])[0].isdigit() else 1
        served: list[Pool] = []
        if path == "/networks/solana/trending_pools" and page <= GT_MAX_PAGE:
            served = self.m.gt_trending(q.get("duration", ["24h"])[0])[(page - 1) * GT_PAGE_SIZE:
                                                                         page * GT_PAGE_SIZE]
        elif path == "/networks/solana/new_pools" and page <= GT_MAX_PAGE:
            served = self.m.gt_new_pools()[(page - 1) * GT_PAGE_SIZE: page * GT_PAGE_SIZE]
        elif path.startswith("/networks/solana/pools/") and "/ohlcv/" not in path:
            ids = path.removeprefix("/networks/solana/pools/").removeprefix("multi/").split(",")
            # asked about these pools: their tokens were refreshed, whether or not GeckoTerminal lists them
            self._mark("geckoterminal", [self.pool_base[i] for i in ids if i in self.pool_base], at)
            served = [self.m.pools[i] for i in ids
                      if i in self.m.pools and self.m.gt_visible(self.m.pools[i])]
        elif path.startswith("/networks/solana/tokens/"):
            mints = path.removeprefix("/networks/solana/tokens/").removeprefix("multi/").split(",")
            self._mark("geckoterminal", mints, at)
            # include=top_pools: each token's top pool comes with it
            served = [top for top in (self.m.gt_top_pool(self.m.by_mint[x]) for x in mints if x in self.m.by_mint)
                      if top is not None and not top.base.special]
        for p in served:
            self.gt_pools_served.add(p.address)
            self._mark("geckoterminal", [p.base.mint], at)

    def _ju(self, at: float, raw: str) -> None:
        path, _, query = raw.partition("?")
        q = parse_qs(query)
        if path == "/tokens/v2/search":
            self._mark("jupiter", ",".join(q.get("query", [""])).split(","), at)
        elif path == "/tokens/v2/recent":
            self._mark("jupiter", [t.mint for t in self.m.jup_recent()], at)
        elif path.startswith("/tokens/v2/") and path.count("/") == 4:
            _, _, _, category, window = path.split("/")
            limit = int(q.get("limit", ["50"])[0])
            self._mark("jupiter", [t.mint for t in self.m.jup_top(category, window, limit)], at)

    def knows(self, t: Token) -> list[str]:
        """The upstreams that have something to say about t."""
        out = []
        if any(self.m.ds_visible(p) for p in t.pools):
            out.append("dexscreener")
        if any(self.m.gt_visible(p) for p in t.pools):
            out.append("geckoterminal")
        if t.jup_known:
            out.append("jupiter")
        return out

    def refreshed_since(self, mints: Iterable[str], since: float) -> list[tuple[str, str]]:
        """(mint, source) pairs not yet refreshed after `since`."""
        missing = []
        for mint in mints:
            t = self.m.by_mint[mint]
            for source in self.knows(t):
                if self.asked[source].get(mint, -math.inf) <= since:
                    missing.append((mint, source))
        return missing


# ----------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------
@dataclass
class Run:
    market: Market
    records: dict[str, dict]
    order: list[str]
    wanted: set[str]
    arranged: dict[str, str]
    sol_quotes: dict[str, float]
    sol_usd: float  # the adopted rate the records were made with (/health)
    limits: dict[str, int] = field(default_factory=dict)
    expectations: dict[str, list[Expect]] = field(default_factory=dict)


def _make_main_dexscreener_only(m: Market, taken: set[str], sol_quoted: bool = False,
                                trending_first: bool = False) -> tuple[Token, Pool]:
    """A token (not in `taken`) with at least two live pools both aggregators show, whose most liquid pool
    GeckoTerminal then stops listing (as for a pool it has not indexed; the market supports this per pool):
    DexScreener's reading of the main pool becomes the only one, so the record must follow it exactly.

    `trending_first`: one of the token's other pools is on page 1 of every GeckoTerminal trending list, so
    whichever list the service reads first, the token has a pool from the start (its history is fixed)."""
    for t in m.tokens:
        live = [p for p in t.pools if not p.completed and m.ds_visible(p) and m.gt_visible(p)]
        if t.mint in taken or len(live) < 2 or not t.jup_known or not m.jup_priced(t) or t.quiet:
            continue
        main = max(live, key=lambda p: p.liquidity)
        if main is not max(t.pools, key=lambda p: p.liquidity) or main.q_no_liquidity or main.q_null_price \
                or main.q_null_fields or (sol_quoted and main.quote is not m.sol):
            continue
        main.gt_hidden = True
        m.invalidate()
        if trending_first and not all(any(p.base is t for p in m.gt_trending(d)[:GT_PAGE_SIZE])
                                      for d in ("5m", "1h", "6h", "24h")):
            main.gt_hidden = False
            m.invalidate()
            continue
        taken.add(t.mint)
        return t, main
    raise AssertionError("no token left to arrange a case on")


def arrange(m: Market) -> dict[str, str]:
    """Cases CONTRACT §2 names that the seed may not produce with a reading fixed to one upstream.

    Returns case name -> mint. Only flags the market already has per pool or token are set.
    """
    taken: set[str] = set()
    cases = {}
    # The main pool's priceUsd is null and its quote is SOL: price_usd = priceNative x SOL/USD.
    t, main = _make_main_dexscreener_only(m, taken, sol_quoted=True)
    main.q_null_price = True
    cases["null_price_usd_main_pool"] = t.mint
    # The main pool has FDV but no market cap, Jupiter has no price, GeckoTerminal's cap is unverified:
    # market_cap_usd is null, never the FDV.
    t, main = _make_main_dexscreener_only(m, taken)
    main.q_null_fields, main.order_key = True, 0.5  # int(order_key * 3) == 1: marketCap null, fdv kept
    t.jup_priced, t.gt_mcap_verified = False, False
    cases["market_cap_unknown_everywhere"] = t.mint
    # Same, but GeckoTerminal's market cap is verified: market_cap_usd is GeckoTerminal's.
    t, main = _make_main_dexscreener_only(m, taken, trending_first=True)
    main.q_null_fields, main.order_key = True, 0.5
    t.jup_priced, t.gt_mcap_verified = False, True
    cases["market_cap_from_geckoterminal"] = t.mint
    # The main pool has neither, Jupiter has no price and GeckoTerminal's cap is unverified: the market cap
    # is null and the FDV is GeckoTerminal's fdv_usd.
    t, main = _make_main_dexscreener_only(m, taken, trending_first=True)
    main.q_null_fields, main.order_key = True, 0.0  # int(order_key * 3) == 0: fdv and marketCap null
    t.jup_priced, t.gt_mcap_verified = False, False
    cases["fdv_from_geckoterminal"] = t.mint
    # The main pool has neither market cap nor FDV: both are Jupiter's.
    t, main = _make_main_dexscreener_only(m, taken)
    main.q_null_fields, main.order_key = True, 0.0  # int(order_key * 3) == 0: fdv and marketCap null
    cases["market_cap_and_fdv_from_jupiter"] = t.mint
    # GeckoTerminal alone shows a token's pools and reports its most liquid one's reserve as negative:
    # that pool's liquidity is unknown (not in the sum, not the main pool); its other figures count.
    for t in m.tokens:
        pools = [p for p in t.pools if m.gt_visible(p)]
        if t.mint not in taken and len(pools) >= 2 and not any(m.ds_visible(p) for p in t.pools):
            max(pools, key=lambda p: p.liquidity).gt_neg_reserve = True
            taken.add(t.mint)
            cases["negative_reserve_on_geckoterminal_only_token"] = t.mint
            break
    else:
        raise AssertionError("no GeckoTerminal-only token with two pools in this market")
    m.invalidate()
    return cases


def sol_quotes(m: Market) -> dict[str, float]:
    """SOL/USD as each upstream serves it (upstreams.md §4); DexScreener's is the median over its deep
    wSOL/USDC pools (every pool at least a tenth as deep as the deepest), not the single deepest one."""
    ds_pairs = [shapes.ds_pair(m, p) for p in m.sol.pools if m.ds_visible(p) and p.quote is m.usdc]
    deepest = max(pair["liquidity"]["usd"] for pair in ds_pairs)
    deep = [float(pair["priceUsd"]) for pair in ds_pairs if pair["liquidity"]["usd"] >= deepest / 10]
    return {"jupiter": shapes.jup_price(m, m.sol)["usdPrice"], "dexscreener": statistics.median(deep),
            "geckoterminal": float(shapes.dec(m.sol.price, 12))}


async def all_records(client: httpx.AsyncClient, base: str) -> list[dict]:
    """Every record of one version, via the cursor walk of the default view."""
    records, cursor = [], None
    while True:
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        response = await client.get(f"{base}/api/tokens", params=params)
        response.raise_for_status()
        body = response.json()
        records.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return records


async def _collect() -> Run:
    market = Market(seed=SEED, n_tokens=N_TOKENS)
    arranged = arrange(market)
    async with serve_market(market, tick_interval=None) as upstream:
        wanted = market.discoverable()
        exposure = Exposure(market)
        settings = fast_settings(upstream)
        # The market enforces the same limits (and DexScreener's 60/min feeds, Jupiter's burst limit): any
        # excess would be a 429 in its log.
        market.rate_limits.update(settings.rate_limits)
        async with running_service(settings) as (base, app), \
                httpx.AsyncClient(timeout=10) as client:
            ingest = app.state.service.ingest

            async def every_discoverable_token():
                served = {r["token_address"] for r in await all_records(client, base)}
                return served if wanted <= served else None

            served = await wait_for(every_discoverable_token, timeout=25, interval=0.2,
                                    message="every discoverable token served")

            def every_listed_pool():
                # every pool GeckoTerminal lists for a served token has been served to the service
                exposure.scan()
                return not [p.address for mint in served for p in market.by_mint[mint].pools
                            if market.gt_visible(p) and p.address not in exposure.gt_pools_served]

            await wait_for(every_listed_pool, timeout=25, interval=0.1,
                           message="every GeckoTerminal pool of a served token served to the service")
            for _ in range(2):  # twice: the second round sees every pool the first one brought in
                since = time.monotonic()

                def refreshed():
                    exposure.scan()
                    return not exposure.refreshed_since(served, since)

                await wait_for(refreshed, timeout=20, interval=0.1,
                               message="every token refreshed by every upstream that knows it")
            cycles = ingest.cycles
            await wait_for(lambda: ingest.cycles >= cycles + 2, timeout=10,
                           message="two more committed cycles")

            async def records_at_one_rate():
                before = (await client.get(f"{base}/health")).json()["sol_usd"]
                records = await all_records(client, base)
                after = (await client.get(f"{base}/health")).json()["sol_usd"]
                return (records, after) if before == after else None

            records, sol_usd = await wait_for(records_at_one_rate, timeout=10, message="records at one rate")
    by_address = {r["token_address"]: r for r in records}
    run = Run(market, by_address, [r["token_address"] for r in records], wanted, arranged, sol_quotes(market),
              sol_usd, dict(settings.rate_limits))
    for mint in by_address:
        t = market.by_mint.get(mint)
        run.expectations[mint] = expectations(market, t) if t is not None else []
    return run


@pytest.fixture(scope="module")
def run() -> Run:
    return anyio.run(_collect)


# ----------------------------------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------------------------------
def _report(run: Run, fields: Iterable[str]) -> list[str]:
    fields = tuple(fields)
    failures = []
    skip = {run.arranged[case] for case in KNOWN_BUGS}
    for mint, record in run.records.items():
        if mint in skip:
            continue
        exp, diff = best_match(record, run.expectations[mint], fields, run.sol_usd)
        if diff:
            t = run.market.by_mint.get(mint)
            label = exp.label if exp else "-"
            failures.append(f"{mint} ({t.symbol if t else '?'}; closest reading [{label}]): "
                            + "; ".join(diff))
    return failures


def test_every_discoverable_token_is_served_once_and_nothing_else(run: Run) -> None:
    assert len(run.order) == len(set(run.order))
    assert run.wanted <= set(run.records)
    tracked = {t.mint for t in run.market.tokens}
    assert set(run.records) <= tracked  # nothing invented, nothing foreign, never SOL or USDC
    for mint in run.records:
        assert run.expectations[mint], f"{mint}: served, but no upstream shows anything of it"


def test_sol_figures_use_the_adopted_rate_read_from_an_upstream(run: Run) -> None:
    """Every *_sol figure is the record's USD figure over the adopted SOL/USD rate (/health), rounded to 10
    significant digits; the rate is a price an upstream serves; price_sol * sol_usd == price_usd to the
    rounding (CONTRACT §2)."""
    rate = run.sol_usd
    assert any(math.isclose(rate, q, rel_tol=SIG) for q in run.sol_quotes.values()), (rate, run.sol_quotes)
    bad = []
    for mint, record in run.records.items():
        for sol_field, usd_field in SOL_OF.items():
            usd, sol = get(record, usd_field), get(record, sol_field)
            if (usd is None) != (sol is None):
                bad.append(f"{mint}: {sol_field}={sol!r} but {usd_field}={usd!r}")
            elif usd is not None and not (on_grid(sol, "sig10") and abs(sol - usd / rate) <= SIG * abs(usd / rate)):
                bad.append(f"{mint}: {sol_field}={sol!r} is not {usd_field}={usd!r} over {rate!r} to 10 digits")
        if record["price_usd"] is not None:
            assert math.isclose(record["price_sol"] * rate, record["price_usd"], rel_tol=2 * SIG), mint
    assert not bad, "\n".join(bad)


def test_record_structure_links(run: Run) -> None:
    """price_1hr_change is stats.1h.price_change; transaction_count is 24h buys + sells; volume_sol is 24h."""
    for mint, r in run.records.items():
        assert r["price_1hr_change"] == r["stats"]["1h"]["price_change"], mint
        day = r["stats"]["24h"]
        if day["buys"] is not None and day["sells"] is not None:
            assert r["transaction_count"] == day["buys"] + day["sells"], mint
        assert r["volume_sol"] == day["volume_sol"], mint
        assert r["stats"]["7d"]["buys"] is None and r["stats"]["7d"]["sells"] is None, mint


@pytest.mark.parametrize("group", list(GROUPS))
def test_figures_match_the_market(run: Run, group: str) -> None:
    """Each group of figures, for every record, is a reading CONTRACT §2 allows of what the upstreams show."""
    failures = _report(run, GROUPS[group])
    assert not failures, f"{len(failures)} of {len(run.records)} records:\n" + "\n".join(failures)


def test_whole_records_match_one_consistent_reading(run: Run) -> None:
    """All figures of a record together: each pool's figures from one upstream, never a mix."""
    failures = _report(run, ALL_FIELDS)
    assert not failures, f"{len(failures)} of {len(run.records)} records:\n" + "\n".join(failures)


# ---- the cases the check must cover -----------------------------------------------------------------
def _several_dexes(run: Run, t: Token) -> bool:
    return len({DISPLAY[p.gt_dex] for p in visible_pools(run.market, t)}) >= 2


def _usdc_pool(run: Run, t: Token) -> bool:
    return any(p.quote.mint == USDC_MINT for p in visible_pools(run.market, t))


def _quote_side(run: Run, t: Token) -> bool:
    m = run.market
    return any((m.ds_visible(p) or m.gt_visible(p)) and p.base.mint in run.records for p in t.quote_pools)


def _bonding_curve(run: Run, t: Token) -> bool:
    return t.on_curve and bool(visible_pools(run.market, t))


def _jupiter_only(run: Run, t: Token) -> bool:
    return t.jup_known and not visible_pools(run.market, t)


def _gt_only_pool(run: Run, t: Token) -> bool:
    m = run.market
    return len(visible_pools(m, t)) >= 2 and any(m.gt_visible(p) and not m.ds_visible(p) for p in t.pools)


def _junk_and_main_quote(run: Run, t: Token) -> bool:
    pools = visible_pools(run.market, t)
    return any(p.junk for p in pools) and any(not p.junk and p.quote in (run.market.sol, run.market.usdc)
                                              for p in pools)


def _only_junk(run: Run, t: Token) -> bool:
    pools = visible_pools(run.market, t)
    return bool(pools) and all(p.junk for p in pools)


def _reversed_on_geckoterminal(run: Run, t: Token) -> bool:
    return any(p.gt_reversed and run.market.gt_visible(p) for p in t.pools)


def _arranged(case: str):
    return lambda run, t: t.mint == run.arranged[case]


CASES = {
    "several_dexes": _several_dexes,
    "usdc_quoted_pool": _usdc_pool,
    "quote_side_of_another_pair": _quote_side,
    "pumpfun_bonding_curve": _bonding_curve,
    "jupiter_only_no_pool": _jupiter_only,
    "geckoterminal_only_pools": _gt_only_pool,
    "junk_quoted_pool_besides_a_sol_or_usdc_pool": _junk_and_main_quote,
    "only_a_junk_quoted_pool": _only_junk,
    "pool_oriented_the_other_way_round_on_geckoterminal": _reversed_on_geckoterminal,
    **{case: _arranged(case) for case in (
        "null_price_usd_main_pool", "market_cap_unknown_everywhere", "market_cap_from_geckoterminal",
        "fdv_from_geckoterminal", "market_cap_and_fdv_from_jupiter",
        "negative_reserve_on_geckoterminal_only_token")},
}


def _case_specifics(run: Run, case: str, t: Token, record: dict) -> None:
    """What each case is about, spelled out (the whole-record match already implies it)."""
    m = run.market
    jup, gt = token_level(m, t)
    if case == "quote_side_of_another_pair":
        assert record["pair_address"] not in {p.address for p in t.quote_pools}
    elif case == "jupiter_only_no_pool":
        assert record["sources"] == ["jupiter"] and record["pair_address"] is None
        assert _same(record["price_usd"], jup["usdPrice"], "sig10")
        assert _same(record["liquidity_usd"], jup["liquidity"], "cents")
    elif case == "null_price_usd_main_pool":
        main = max(visible_pools(m, t), key=lambda p: p.liquidity)
        pair = shapes.ds_pair(m, main)
        assert pair["priceUsd"] is None and pair["quoteToken"]["address"] == WSOL_MINT
        assert record["pair_address"] == main.address and record["price_usd"] is not None
        assert math.isclose(record["price_sol"], float(pair["priceNative"]), rel_tol=2 * SIG)
    elif case == "market_cap_unknown_everywhere":
        main = max(visible_pools(m, t), key=lambda p: p.liquidity)
        assert record["pair_address"] == main.address
        assert record["market_cap_usd"] is None and record["market_cap_sol"] is None
        assert shapes.ds_pair(m, main)["fdv"] is not None
        assert _same(record["fdv_usd"], shapes.ds_pair(m, main)["fdv"], "cents")
    elif case == "market_cap_from_geckoterminal":
        assert gt is not None and gt["market_cap_usd"] is not None
        assert _same(record["market_cap_usd"], float(gt["market_cap_usd"]), "cents")
        assert "geckoterminal" in record["sources"]
    elif case == "fdv_from_geckoterminal":
        assert gt is not None and record["market_cap_usd"] is None
        assert _same(record["fdv_usd"], float(gt["fdv_usd"]), "cents") and "geckoterminal" in record["sources"]
    elif case == "market_cap_and_fdv_from_jupiter":
        assert _same(record["market_cap_usd"], jup["mcap"], "cents") and _same(record["fdv_usd"], jup["fdv"], "cents")
        assert "jupiter" in record["sources"]
    elif case == "junk_quoted_pool_besides_a_sol_or_usdc_pool":
        junk = next(p for p in visible_pools(m, t) if p.junk)
        assert record["pair_address"] != junk.address
        # on paper the junk-quoted pool is deeper than the real main pool: only §2's quote rule keeps it out
        reported = shapes.ds_pair(m, junk)["liquidity"]["usd"] if m.ds_visible(junk) else None
        main = m.main_pool(t)
        assert record["pair_address"] == main.address
        assert reported is None or reported > main.liquidity
    elif case == "only_a_junk_quoted_pool":
        assert record["pair_address"] == next(p for p in visible_pools(m, t) if p.junk).address
    elif case == "pool_oriented_the_other_way_round_on_geckoterminal":
        flipped = [p for p in t.pools if p.gt_reversed and m.gt_visible(p)]
        assert shapes.gt_pool(m, flipped[0])["relationships"]["quote_token"]["data"]["id"] == f"solana_{t.mint}"
        if any(p.address == record["pair_address"] for p in flipped):
            assert record["price_usd"] is not None and not math.isclose(record["price_usd"], m.sol_usd)
    elif case == "negative_reserve_on_geckoterminal_only_token":
        negative = [p for p in t.pools if p.gt_neg_reserve]
        others = [p for p in t.pools if m.gt_visible(p) and not p.gt_neg_reserve]
        assert record["pair_address"] not in {p.address for p in negative}
        assert _same(record["liquidity_usd"], _sum(_num(shapes.gt_pool(m, p)["attributes"]["reserve_in_usd"])
                                                    for p in others), "cents")


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case]))
    if case in KNOWN_BUGS else case for case in CASES])
def test_case_is_covered_and_exact(run: Run, case: str) -> None:
    others = {run.arranged[c] for c in KNOWN_BUGS if c != case}  # each known bug fails only its own case
    tokens = [t for t in run.market.tokens
              if t.mint in run.records and t.mint not in others and CASES[case](run, t)]
    assert tokens, f"the market has no served token for {case}"
    failures = []
    for t in tokens:
        record = run.records[t.mint]
        exp, diff = best_match(record, run.expectations[t.mint], ALL_FIELDS, run.sol_usd)
        if diff:
            failures.append(f"{t.mint} ({t.symbol}; closest [{exp.label if exp else '-'}]): "
                            + "; ".join(diff))
            continue
        _case_specifics(run, case, t, record)
    assert not failures, "\n".join(failures)


def _max_in_window(times: list[float], window: float = 60.0) -> int:
    """The most requests inside any `window` seconds (a sliding window, as the upstreams count)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def test_no_budget_rate_group_or_burst_limit_was_exceeded(run: Run) -> None:
    """From the market's own request log: DexScreener's 60/min feeds apart from its other group, every
    budget in any sliding 60 s, and not one 429 (the market enforces all of these, Jupiter's burst too)."""
    log = run.market.requests
    limits = run.limits
    for source, requests in log.items():
        assert [path for _, path, status in requests if status == 429] == [], source
    feeds = [t for t, path, _ in log["dexscreener"] if path.startswith(("/token-profiles/", "/token-boosts/"))]
    pairs = [t for t, path, _ in log["dexscreener"] if not path.startswith(("/token-profiles/", "/token-boosts/"))]
    assert feeds and _max_in_window(feeds) <= 60
    assert _max_in_window(pairs) <= limits["dexscreener"]
    for source in ("geckoterminal", "jupiter"):
        assert _max_in_window([t for t, _, _ in log[source]]) <= limits[source]
    # every /tokens/v1 batch fits under the 30-pair cap as last known, and a cut answer is asked again
    sizes = [len(path.split("?")[0].rsplit("/", 1)[1].split(",")) for _, path, _ in log["dexscreener"]
             if path.startswith("/tokens/v1/")]
    assert sizes and max(sizes) <= 30
