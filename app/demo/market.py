"""A simulated Solana meme-coin market: pure state, no HTTP.

`Market` holds a few hundred tokens, each with 1-3 pools on a mix of DEXes, and advances them with a
random walk on every `tick()`. `app.demo.shapes` renders this state in the exact JSON shapes of
DexScreener, GeckoTerminal and Jupiter (shared/upstreams.md); `app.demo.server` serves it over HTTP.
Construction is in app.demo.build, the discovery lists in app.demo.lists, the vocabulary in
app.demo.model.

The truth is exposed for tests: `market.tokens` (the tracked meme coins, launched ones appended),
`market.sol` / `market.sol_usd`, `market.pools`, `market.discoverable()`.

Simulated time: every tick stands for `tick_seconds` (default 60 s) of market activity, whatever the
wall clock did; timestamps (creation times, `updatedAt`, candle boundaries) come from `now()`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from app.demo.build import MarketBuilder
from app.demo.faults import Faults
from app.demo.lists import MarketLists
from app.demo.model import (  # noqa: F401 - re-exported: the names tests and the server use
    B58_ALPHABET,
    DEX_ORCA,
    DEX_PUMPSWAP,
    DEX_RAYDIUM_CLMM,
    FAULT_KINDS,
    GRADUATION_MCAP_USD,
    GT_DURATIONS,
    JUP_CATEGORIES,
    JUP_WINDOW_INDEX,
    SOURCES,
    USDC_MINT,
    WIN_SECONDS,
    WSOL_MINT,
    ForeignItem,
    Pool,
    Token,
)


class Market(MarketBuilder, MarketLists):
    """The simulated market. See the module docstring.

    Truth for tests: `tokens` (meme coins; launches are appended), `sol` / `usdc` (special tokens, not in
    `tokens`), `sol_usd`, `pools` (address -> Pool, every source's pools), `by_mint` (all of them),
    `discoverable()`, `first_calls_discoverable()`. Which source shows what: `ds_visible(pool)`,
    `gt_visible(pool)`, `token.jup_known`, `jup_priced(token)`. `faults`, `requests` and `rate_limits`
    are read by the HTTP server (app.demo.server).
    """

    def __init__(
        self,
        seed: int = 1,
        n_tokens: int = 300,
        now: Callable[[], float] = time.time,
        *,
        tick_seconds: float = 60.0,
        launch_rate: float = 0.05,
        max_tokens: int | None = None,
    ) -> None:
        self.seed = seed
        self.now = now
        self.rng = random.Random(seed)
        self.tick_seconds = float(tick_seconds)
        self.launch_rate = float(launch_rate)
        # Launches stop once this many tokens exist, so tick() stays fast in a long-running demo.
        self.max_tokens = max_tokens if max_tokens is not None else 3 * n_tokens
        self.tick_no = 0
        self.block_id = 391_000_000 + self.rng.randrange(1_000_000)
        self.faults = Faults(seed)
        self.requests: dict[str, list[tuple[float, str, int]]] = {s: [] for s in SOURCES}
        # Per-source sliding 60 s request limit enforced by the server (None: unlimited).
        self.rate_limits: dict[str, int | None] = {s: None for s in SOURCES}
        # Where token images point; serve_market sets it to the market server's own /img route.
        self.image_base: str | None = None
        self._cache: dict[Any, Any] = {}
        self._alphas = tuple(min(1.0, self.tick_seconds / w) for w in WIN_SECONDS)
        self._win_minutes = tuple(w / 60.0 for w in WIN_SECONDS)

        t0 = now()
        self.created_at = t0
        self.sol = self._make_special(WSOL_MINT, "Wrapped SOL", "SOL", 9, 150.0 * math.exp(self.rng.gauss(0, 0.02)),
                                      t0 - 5 * 365 * 86400)
        self.sol.coingecko_id = "wrapped-solana"
        self.usdc = self._make_special(USDC_MINT, "USD Coin", "USDC", 6, 1.0, t0 - 5 * 365 * 86400)
        self.usdc.coingecko_id = "usd-coin"
        self.tokens: list[Token] = []
        self.pools: dict[str, Pool] = {}
        self.by_mint: dict[str, Token] = {WSOL_MINT: self.sol, USDC_MINT: self.usdc}

        # SOL's own markets: the SOL/USD truth every upstream can report.
        for dex, liq, share in ((DEX_RAYDIUM_CLMM, 28e6, 0.6), (DEX_ORCA, 21e6, 0.4)):
            self._add_pool(self.sol, self.usdc, dex, t0 - 3 * 365 * 86400 * self.rng.uniform(0.5, 1.0),
                           liq, share, basis=1.0 + self.rng.uniform(-0.0005, 0.0005))
        self.sol.activity = self.sol.base_activity = 250_000.0  # USD per minute

        for _ in range(n_tokens):
            self._make_token(t0, initial=True)
        self._quote_side_pairs()
        self._special_visibility()
        self._init_feeds(t0)
        self._init_history()
        # Per-answer order of DexScreener's pairs (no fixed order), apart from the market's own walk.
        self.answer_rng = random.Random(seed ^ 0xA45)
        # DexScreener's 60/min group of profile and boost feeds, enforced by the server (None: unlimited).
        self.ds_list_limit: int | None = 60
        self.junk: Token
        self._quirks()

    # ------------------------------------------------------------------------------------------------
    # the walk
    # ------------------------------------------------------------------------------------------------
    @property
    def sol_usd(self) -> float:
        return self.sol.price

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self._tick()

    def _tick(self) -> None:
        rng = self.rng
        gauss = rng.gauss
        rand = rng.random
        exp = math.exp
        alphas = self._alphas
        wmin = self._win_minutes
        self.tick_no += 1
        tick_no = self.tick_no
        self.block_id += int(self.tick_seconds * 2.5)
        phase = tick_no % 3

        sol = self.sol
        sol_prev = sol.price
        sol.price = sol_prev * exp(0.02 * math.log(150.0 / sol_prev) + gauss(0, sol.sigma))

        for t in (sol, *self.tokens):
            if not t.special:
                r = gauss(0.0, t.sigma)
                if rand() < 0.003:  # pump or dump: price jump and a burst of activity
                    r += gauss(0.12, 0.08) * (1 if rand() < 0.6 else -1)
                    t.activity *= 5.0
                if t.quiet:
                    r *= 0.05
                    t.quiet_ticks += 1
                    if rand() < 0.01:
                        t.quiet = False
                        t.quiet_ticks = 0
                elif rand() < 0.0005:
                    t.quiet = True
                    t.quiet_ticks = 0
                t.price *= exp(r)
                target = t.base_activity * (0.002 if t.quiet else 1.0)
                t.activity = exp(math.log(max(t.activity, 1e-9)) * 0.9 + math.log(max(target, 1e-9)) * 0.1
                                 + gauss(0, 0.12))
                t.liq_drift *= exp(gauss(0, 0.003))
                t.holders += int(t.activity * 0.002 * rand() * (0 if t.quiet else 1))
            price = t.price
            refs = t.refs
            hrefs = t.holder_refs
            holders = t.holders
            for i in range(6):
                a = alphas[i]
                refs[i] += (price - refs[i]) * a
                hrefs[i] += (holders - hrefs[i]) * a
            act = t.activity
            pr = math.sqrt(price * t.liq_drift)
            for p in t.pools:
                if p.completed:
                    pa = 0.0
                else:
                    p.liquidity = p.liq0 * pr * math.sqrt(p.quote.price / (p.base0 * p.quote0))
                    pa = act * p.share
                v = p.vols
                for i in range(6):
                    v[i] += (pa * wmin[i] - v[i]) * alphas[i]
                for i in range(1, 6):  # a longer window holds the shorter one
                    if v[i] < v[i - 1]:
                        v[i] = v[i - 1]
                if p.gt_phase == phase:
                    self._capture_gt(p)
            if t.on_curve:
                self._curve_progress(t)

        if rand() < self.launch_rate and len(self.tokens) < self.max_tokens:
            self.launch()
        self._feed_events()
        self._cache.clear()

    def _curve_progress(self, t: Token) -> None:
        if t.market_cap >= GRADUATION_MCAP_USD:
            self._graduate(t)

    def _graduate(self, t: Token) -> None:
        rng = self.rng
        now = self.now()
        curve = t.pools[0]
        curve.completed = True
        curve.liquidity = 0.0
        curve.vols = [v * 0.5 for v in curve.vols]
        pool = self._add_pool(t, self.sol, DEX_PUMPSWAP, now, t.market_cap * rng.uniform(0.12, 0.2), 1.0,
                              basis=1.0)
        pool.base0 = t.price
        pool.ds_tick = self.tick_no + 1
        pool.gt_tick = self.tick_no + 2
        curve.share = 0.0
        t.on_curve = False
        t.graduated_at = now
        t.graduated_pool = pool.address
        t.base_activity = pool.liq0 * rng.uniform(1.0, 5.0) / 1440.0
        self._capture_gt(pool)

    def launch(self) -> Token:
        """A new pump.fun token: Jupiter sees it at once, DexScreener and GeckoTerminal a few ticks later."""
        tok = self._make_token(self.now(), initial=False)
        for p in tok.pools:
            p.ds_tick = self.tick_no + 2
            p.gt_tick = self.tick_no + 3
            p.vols = [tok.activity * p.share * 0.5 for _ in range(6)]
            self._capture_gt(p)
        return tok

    def _feed_events(self) -> None:
        rng = self.rng
        if rng.random() < 0.25:
            if rng.random() < 0.1:
                self.profiles.insert(0, self._foreign())
            else:
                t = self._recent_biased()
                if t is not None and not t.profile:
                    t.profile = True
                    t.has_info = True
                    self.profiles.insert(0, t)
            del self.profiles[30:]
        if rng.random() < 0.3:
            if rng.random() < 0.1:
                f = self._foreign()
                self.boosts.insert(0, (f, min(f.total, 50)))
            else:
                t = self._recent_biased()
                if t is not None:
                    amount = rng.choice((10, 10, 30, 50, 100, 500))
                    t.boost_active += amount
                    t.boost_total += amount
                    self.boosts.insert(0, (t, amount))
            for item, amount in self.boosts[30:]:
                if isinstance(item, Token):
                    item.boost_active = max(0, item.boost_active - amount)
            del self.boosts[30:]

    def _recent_biased(self) -> Token | None:
        if not self.tokens:
            return None
        rng = self.rng
        if rng.random() < 0.5:
            return self.tokens[-1 - min(len(self.tokens) - 1, int(rng.expovariate(1 / 40)))]
        return rng.choice(self.tokens)

    def _capture_gt(self, p: Pool) -> None:
        """GeckoTerminal's (slightly older, slightly different) view of a pool: (base price, quote price, SOL
        price, liquidity, volumes, base changes, trades, quote changes), in USD and in the pool's true
        orientation (app.demo.shapes_geckoterminal turns a reversed pool round)."""
        t = p.base
        p.gt_state = (
            p.price_usd, p.quote.price, self.sol.price, p.liquidity,
            tuple(v * p.gt_vol_factor for v in p.vols), tuple(t.change(i) for i in range(6)),
            tuple(p.trades(i) for i in range(6)), tuple(p.quote.change(i) for i in range(6)),
        )

    # ------------------------------------------------------------------------------------------------
    # visibility and lookups
    # ------------------------------------------------------------------------------------------------
    def cached(self, key: Any, fn: Callable[[], Any]) -> Any:
        """Memoise `fn()` until the next tick."""
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = fn()
            return value

    def invalidate(self) -> None:
        self._cache.clear()

    def token(self, mint: str) -> Token | None:
        return self.by_mint.get(mint)

    def ds_visible(self, p: Pool) -> bool:
        return not p.ds_hidden and self.tick_no >= p.ds_tick

    def gt_visible(self, p: Pool) -> bool:
        return not p.gt_hidden and self.tick_no >= p.gt_tick and not p.completed

    def ds_pools(self, t: Token) -> list[Pool]:
        return [p for p in t.pools if self.ds_visible(p)]

    def gt_pools(self, t: Token) -> list[Pool]:
        """GeckoTerminal pools where t is the base, most liquid first."""
        return sorted((p for p in t.pools if self.gt_visible(p)), key=lambda p: -p.gt_state[3])

    def gt_top_pool(self, t: Token) -> Pool | None:
        """GeckoTerminal's single most liquid pool for a token (as base, else as quote)."""
        pools = self.gt_pools(t)
        if not pools and t.special:
            pools = sorted((p for p in t.quote_pools if self.gt_visible(p)), key=lambda p: -p.gt_state[3])
        return pools[0] if pools else None

    def jup_priced(self, t: Token) -> bool:
        """Whether Jupiter Price v3 returns this mint (tokens quiet for long lose their price)."""
        if not (t.jup_known and t.jup_priced):
            return False
        return not (t.quiet and t.quiet_ticks >= 40)

    def main_pool(self, t: Token) -> Pool | None:
        """CONTRACT §2's main pool in truth: the most liquid live pool quoted in SOL or USDC, else any."""
        live = [p for p in t.pools if not p.completed]
        preferred = [p for p in live if p.quote in (self.sol, self.usdc)] or live
        return max(preferred, key=lambda p: p.liquidity) if preferred else None

    # ------------------------------------------------------------------------------------------------
    # images
    # ------------------------------------------------------------------------------------------------
    def image_url(self, t: Token, source: str) -> str:
        if self.image_base:
            return f"{self.image_base}/{t.image_key}.svg"
        if source == "dexscreener":
            return f"https://dd.dexscreener.com/ds-data/tokens/solana/{t.mint}.png"
        if source == "geckoterminal":
            return f"https://assets.geckoterminal.com/demo/{t.image_key}.png"
        return f"https://ipfs.io/ipfs/Qm{t.mint[:44]}"

    def header_url(self, t: Token) -> str | None:
        if not t.header:
            return None
        return f"https://dd.dexscreener.com/ds-data/tokens/solana/{t.mint}/header.png"
