"""A simulated Solana meme-coin market: pure state, no HTTP.

`Market` holds a few hundred tokens, each with 1-3 pools on a mix of DEXes, and advances them with a
random walk on every `tick()`. `app.demo.shapes` renders this state in the exact JSON shapes of
DexScreener, GeckoTerminal and Jupiter (shared/upstreams.md); `app.demo.server` serves it over HTTP.

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
from datetime import UTC, datetime
from typing import Any

WSOL_MINT = "So11111111111111111111111111111111111111112"
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# Every pool keeps these windows (GeckoTerminal reports all six; DexScreener and Jupiter four).
WINDOWS: tuple[str, ...] = ("m5", "m15", "m30", "h1", "h6", "h24")
WIN_SECONDS: tuple[int, ...] = (300, 900, 1800, 3600, 21600, 86400)
DS_WINDOWS: tuple[tuple[str, int], ...] = (("m5", 0), ("h1", 3), ("h6", 4), ("h24", 5))
JUP_WINDOWS: tuple[tuple[str, int], ...] = (("5m", 0), ("1h", 3), ("6h", 4), ("24h", 5))
JUP_WINDOW_INDEX = dict(JUP_WINDOWS)
GT_DURATIONS: tuple[tuple[str, int], ...] = (("5m", 0), ("1h", 3), ("6h", 4), ("24h", 5))

JUP_CATEGORIES: tuple[str, ...] = ("toporganicscore", "toptraded", "toptrending")
SOURCES: tuple[str, ...] = ("dexscreener", "geckoterminal", "jupiter")
FAULT_KINDS: tuple[str, ...] = ("429", "500", "slow", "html", "truncated")

# (DexScreener dexId, DexScreener labels, GeckoTerminal dex id, GeckoTerminal dex name)
DEX_PUMPFUN = ("pumpfun", None, "pump-fun", "Pump.fun")
DEX_PUMPSWAP = ("pumpswap", None, "pumpswap", "PumpSwap")
DEX_RAYDIUM = ("raydium", None, "raydium", "Raydium")
DEX_RAYDIUM_CLMM = ("raydium", ["CLMM"], "raydium-clmm", "Raydium (CLMM)")
DEX_RAYDIUM_CPMM = ("raydium", ["CPMM"], "raydium-cpmm", "Raydium (CPMM)")
DEX_METEORA = ("meteora", None, "meteora", "Meteora")
DEX_METEORA_DLMM = ("meteora", ["DLMM"], "meteora-dlmm", "Meteora DLMM")
DEX_ORCA = ("orca", None, "orca", "Orca")
OTHER_DEXES = (DEX_RAYDIUM, DEX_RAYDIUM_CLMM, DEX_RAYDIUM_CPMM, DEX_METEORA, DEX_METEORA_DLMM, DEX_ORCA)
OTHER_DEX_WEIGHTS = (30, 12, 14, 10, 20, 14)
GT_DEX_NAMES = {d[2]: d[3] for d in (DEX_PUMPFUN, DEX_PUMPSWAP, *OTHER_DEXES)}

GRADUATION_MCAP_USD = 69_000.0
NEW_POOL_WINDOW_S = 48 * 3600

_ADJ = (
    "Doge", "Baby", "Based", "Giga", "Tiny", "Smol", "Fat", "Angry", "Sad", "Happy", "Golden", "Dark",
    "Super", "Mega", "Turbo", "Sleepy", "Crazy", "Lucky", "Cosmic", "Degen", "Rich", "Frozen", "Hyper",
    "Little", "Royal", "Wild", "Chill", "Silly", "Magic", "Laser", "Pixel", "Ninja", "Space", "Retro",
)
_NOUN = (
    "Cat", "Dog", "Frog", "Pepe", "Shiba", "Hamster", "Penguin", "Monkey", "Whale", "Goat", "Bonk",
    "Wojak", "Chad", "Pengu", "Otter", "Panda", "Duck", "Moon", "Rocket", "Banana", "Taco", "Pizza",
    "Wizard", "Cowboy", "Samurai", "Robot", "Alien", "Ghost", "Dragon", "Tiger", "Bull", "Bear", "Llama",
    "Capybara", "Hippo", "Sloth", "Koala", "Fox", "Owl", "Crab", "Shrimp", "Toad", "Unicorn",
)
_TAIL = ("Coin", "Inu", "AI", "Token", "Sol", "Cash", "Mania", "Club", "World", "Hat", "Wif Hat", "Classic")
_FOREIGN_CHAINS = ("ethereum", "base", "bsc")


def b58encode_int(value: int) -> str:
    out = []
    while value:
        value, rem = divmod(value, 58)
        out.append(B58_ALPHABET[rem])
    return "".join(reversed(out)) or "1"


def random_address(rng: random.Random, suffix: str = "") -> str:
    """A base58 encoding of a 32-byte value (43-44 chars); `suffix` (e.g. "pump") forced at the end."""
    if not suffix:
        while True:
            s = b58encode_int(rng.getrandbits(256))
            if len(s) >= 43:
                return s
    k = len(suffix)
    tail = 0
    for ch in suffix:
        tail = tail * 58 + B58_ALPHABET.index(ch)
    lo = -(-(58**43 - tail) // 58**k)  # 44 characters, so the top byte is non-zero
    hi = (2**256 - 1 - tail) // 58**k
    return b58encode_int(rng.randint(lo, hi) * 58**k + tail)


def iso(ts: float, ms: bool = False) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if ms:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Token:
    """One token: the truth every upstream reports its own way."""

    __slots__ = (
        "mint", "name", "symbol", "decimals", "token_program", "created_at", "created_iso", "created_iso_ms",
        "launchpad", "dev", "twitter", "website", "telegram", "description", "header",
        "total_supply", "circ_supply", "price", "price0", "sigma", "refs", "activity", "base_activity",
        "liq_drift", "pools", "quote_pools", "holders", "holder_refs", "organic_score", "organic_jitter",
        "hype", "verified", "tags", "audit", "jup_known", "jup_priced", "jup_null_stats", "quiet",
        "quiet_ticks", "on_curve", "graduated_at", "graduated_pool", "profile", "boost_active",
        "boost_total", "has_info", "gt_mcap_verified", "coingecko_id", "block_lag", "special", "index",
        "image_key", "gt_hype",
    )

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    # ---- convenient truth -------------------------------------------------------------------------
    @property
    def is_pump(self) -> bool:
        return self.launchpad == "pump.fun"

    @property
    def market_cap(self) -> float:
        return self.price * self.circ_supply

    @property
    def fdv(self) -> float:
        return self.price * self.total_supply

    def change(self, i: int) -> float:
        """Percent price change over window index i (see WINDOWS)."""
        ref = self.refs[i]
        return (self.price / ref - 1.0) * 100.0 if ref > 0 else 0.0

    @property
    def liquidity(self) -> float:
        """Jupiter-level liquidity: all pools where this token is the base."""
        return sum(p.liquidity for p in self.pools)

    def volume(self, i: int) -> float:
        return sum(p.vols[i] for p in self.pools)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Token({self.symbol!r}, {self.mint}, ${self.price:.6g}, pools={len(self.pools or ())})"


class Pool:
    __slots__ = (
        "address", "base", "quote", "ds_dex", "ds_labels", "gt_dex", "created_at", "created_iso",
        "created_ms", "basis", "share", "liq0", "base0", "quote0", "liquidity", "vols", "avg_trade",
        "buy_ratio", "ds_tick", "gt_tick", "ds_hidden", "gt_hidden", "completed", "order_key",
        "q_null_price", "q_null_fields", "q_null_labels", "q_no_liquidity", "q_drop", "gt_neg_reserve",
        "gt_vol_factor", "gt_phase", "gt_state",
    )

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def price_usd(self) -> float:
        return self.base.price * self.basis

    @property
    def price_native(self) -> float:
        """Price of the base in units of the quote token."""
        return self.price_usd / self.quote.price

    def trades(self, i: int) -> tuple[int, int]:
        n = self.vols[i] / self.avg_trade  # rounded up: any real volume means at least one trade
        return int(n * self.buy_ratio + 0.95), int(n * (1.0 - self.buy_ratio) + 0.95)

    def __repr__(self) -> str:  # pragma: no cover
        return f"Pool({self.base.symbol}/{self.quote.symbol} {self.gt_dex} {self.address})"


class ForeignItem:
    """A DexScreener profile/boost feed entry for another chain (the client must filter it out)."""

    __slots__ = ("chain", "address", "total", "seed")

    def __init__(self, chain: str, address: str, total: int, seed: int) -> None:
        self.chain, self.address, self.total, self.seed = chain, address, total, seed


class Fault:
    __slots__ = ("kind", "rate", "retry_after", "delay", "times", "status")

    def __init__(self, kind: str, rate: float = 1.0, retry_after: float | None = 2, delay: float = 2.0,
                 times: int | None = None, status: int | None = None) -> None:
        self.kind, self.rate, self.retry_after, self.delay = kind, rate, retry_after, delay
        self.times, self.status = times, status

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Faults:
    """Switchable failures per upstream.

    `set(source, kind, rate=1.0, retry_after=2, delay=2.0, times=None, status=None)`:
    kind is "429" (Retry-After: retry_after seconds; None leaves the header out), "500", "slow"
    (answer normally after `delay` seconds), "html" (a Cloudflare-like page, status 200 unless
    `status` says otherwise), "truncated" (status 200, the JSON body cut in half). `rate` is the
    fraction of requests hit; `times` makes the fault clear itself after that many hits.
    """

    def __init__(self, seed: int = 0) -> None:
        self._faults: dict[str, Fault] = {}
        self._rng = random.Random(seed ^ 0x5EED)

    def set(self, source: str, kind: str, **opts: Any) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        unknown = set(opts) - {"rate", "retry_after", "delay", "times", "status"}
        if unknown:
            raise ValueError(f"unknown fault options: {', '.join(sorted(unknown))}")
        rate = float(opts.get("rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        self._faults[source] = Fault(kind, **opts)

    def clear(self, source: str | None = None) -> None:
        if source is None:
            self._faults.clear()
        else:
            self._faults.pop(source, None)

    def get(self, source: str) -> Fault | None:
        return self._faults.get(source)

    def pick(self, source: str) -> Fault | None:
        """The fault to apply to one request now (rate and times applied), or None."""
        fault = self._faults.get(source)
        if fault is None:
            return None
        if fault.rate < 1.0 and self._rng.random() >= fault.rate:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(source, None)
        return fault

    def as_dict(self) -> dict[str, Any]:
        return {s: f.as_dict() for s, f in self._faults.items()}


class Market:
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

    # ------------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------------
    def _make_special(self, mint: str, name: str, symbol: str, decimals: int, price: float, created: float) -> Token:
        return Token(
            mint=mint, name=name, symbol=symbol, decimals=decimals, token_program=TOKEN_PROGRAM,
            created_at=created, created_iso=iso(created), created_iso_ms=iso(created, ms=True), launchpad=None,
            dev=None, twitter=None, website=None, telegram=None, description=None, header=None,
            total_supply=6e8 if symbol == "SOL" else 1e10, circ_supply=5e8 if symbol == "SOL" else 1e10,
            price=price, price0=price, sigma=0.0015 if symbol == "SOL" else 0.0, refs=[price] * 6,
            activity=0.0, base_activity=0.0, liq_drift=1.0, pools=[], quote_pools=[], holders=10_000_000,
            holder_refs=[10_000_000] * 6, organic_score=99.0, organic_jitter=(1.0,) * 4, hype=(0.0,) * 4, gt_hype=(0.0,) * 4,
            verified=True, tags=["verified", "strict", "community"],
            audit={"mintAuthorityDisabled": True, "freezeAuthorityDisabled": True, "topHoldersPercentage": 3.1},
            jup_known=True, jup_priced=True, jup_null_stats=(), quiet=False, quiet_ticks=0, on_curve=False,
            graduated_at=None, graduated_pool=None, profile=False, boost_active=0, boost_total=0,
            has_info=True, gt_mcap_verified=True, coingecko_id=None, block_lag=0, special=True, index=-1,
            image_key=symbol.lower(),
        )

    def _name(self) -> tuple[str, str]:
        rng = self.rng
        r = rng.random()
        adj, noun = rng.choice(_ADJ), rng.choice(_NOUN)
        if r < 0.35:
            name = f"{adj} {noun}"
            symbol = (adj[0] + noun).upper() if rng.random() < 0.5 else noun.upper()
        elif r < 0.55:
            name = f"{noun} Wif {rng.choice(_NOUN)}"
            symbol = "".join(w[0] for w in name.split()).upper() + ("" if rng.random() < 0.5 else noun[:2].upper())
        elif r < 0.8:
            name = f"{noun} {rng.choice(_TAIL)}"
            symbol = noun.upper()[:6] + ("" if rng.random() < 0.6 else rng.choice(_TAIL).split()[0].upper()[:3])
        else:
            name = f"{adj}{noun.lower()}"
            symbol = name.upper()[:8]
        return name, symbol[:10]

    def _make_token(self, t0: float, initial: bool) -> Token:
        rng = self.rng
        index = len(self.tokens)
        if initial:
            r = rng.random()
            kind = "curve" if r < 0.15 else ("grad" if r < 0.60 else "other")
        else:
            kind = "curve"
        is_pump = kind != "other"
        mint = random_address(rng, "pump" if is_pump else "")
        name, symbol = self._name()
        if kind == "curve":
            age = 60.0 + rng.expovariate(1 / 7200) if initial else 0.0
            mcap = math.exp(rng.uniform(math.log(4_500), math.log(45_000))) if initial else rng.uniform(4_000, 6_000)
        elif kind == "grad":
            age = max(3600.0, math.exp(rng.gauss(math.log(4 * 86400), 1.6)))
            mcap = max(GRADUATION_MCAP_USD * 1.05, math.exp(rng.gauss(math.log(600_000), 1.5)))
        else:
            age = max(2 * 3600.0, math.exp(rng.gauss(math.log(60 * 86400), 1.3)))
            mcap = math.exp(rng.gauss(math.log(3_000_000), 1.4))
        created = t0 - age
        if is_pump:
            total = 1e9 if rng.random() < 0.8 else 1e9 - rng.uniform(1e5, 2e7)
            circ = total
            decimals = 6
        else:
            total = 10 ** rng.uniform(7.5, 10.5)
            circ = total * (1.0 if rng.random() < 0.5 else rng.uniform(0.55, 1.0))
            decimals = rng.choice((6, 6, 9))
        price = mcap / circ
        handle = "".join(name.split()).lower()[:14] + ("" if rng.random() < 0.5 else str(rng.randrange(10, 999)))
        score = max(0.0, min(100.0, rng.gauss({"curve": 22, "grad": 45, "other": 55}[kind], 20)))
        tok = Token(
            mint=mint, name=name, symbol=symbol, decimals=decimals,
            token_program=TOKEN_2022_PROGRAM if (not is_pump and rng.random() < 0.08) else TOKEN_PROGRAM,
            created_at=created, created_iso=iso(created), created_iso_ms=iso(created, ms=True),
            launchpad="pump.fun" if is_pump else None,
            dev=random_address(rng),
            twitter=f"https://x.com/{handle}" if rng.random() < 0.6 else None,
            website=f"https://{handle}.fun" if rng.random() < 0.35 else None,
            telegram=f"https://t.me/{handle}" if rng.random() < 0.3 else None,
            description=f"{name} (${symbol}) is the {rng.choice(_ADJ).lower()}est {rng.choice(_NOUN).lower()} on Solana."
            if rng.random() < 0.7 else None,
            header=rng.random() < 0.5,
            total_supply=total, circ_supply=circ, price=price, price0=price,
            sigma=math.exp(rng.gauss(math.log(0.012 if kind == "curve" else 0.006), 0.45)),
            refs=[price] * 6, activity=0.0, base_activity=0.0, liq_drift=1.0, pools=[], quote_pools=[],
            holders=int(max(12, mcap / rng.uniform(80, 400))), holder_refs=None,
            organic_score=round(score, 2), organic_jitter=tuple(math.exp(rng.gauss(0, 0.25)) for _ in range(4)),
            hype=tuple(math.exp(rng.gauss(0, 1.0)) for _ in range(4)),
            gt_hype=tuple(math.exp(rng.gauss(0, 1.5)) for _ in range(4)),
            verified=(not is_pump and rng.random() < 0.15) or (is_pump and mcap > 5e6 and rng.random() < 0.5),
            tags=None,
            audit=None, jup_known=True, jup_priced=True, jup_null_stats=(), quiet=False, quiet_ticks=0,
            on_curve=kind == "curve", graduated_at=None, graduated_pool=None, profile=False, boost_active=0,
            boost_total=0, has_info=rng.random() < 0.55, gt_mcap_verified=rng.random() < 0.1,
            coingecko_id=None, block_lag=rng.choice((0, 0, 0, 1, 2, 5)), special=False, index=index,
            image_key=mint,
        )
        tok.holder_refs = [tok.holders] * 6
        tok.tags = (["pump"] if is_pump else []) + (["verified"] if tok.verified else [])
        tok.audit = {
            "mintAuthorityDisabled": is_pump or rng.random() < 0.85,
            "freezeAuthorityDisabled": is_pump or rng.random() < 0.9,
            "topHoldersPercentage": round(rng.uniform(8, 70), 2),
            "devBalancePercentage": round(rng.expovariate(1 / 2.5), 2),
            "devMints": rng.choice((1, 1, 1, 2, 3, 7)),
        }
        if rng.random() < 0.04:
            tok.audit["isSus"] = True
        if is_pump and rng.random() < 0.3:
            tok.audit["devMigrations"] = rng.randrange(0, 4)
        if initial and rng.random() < 0.04:
            tok.jup_null_stats = (rng.choice(("5m", "1h", "6h", "24h")),)
        if tok.verified and rng.random() < 0.5:
            tok.coingecko_id = "-".join(name.lower().split())

        # Pools.
        if kind == "curve":
            liq = mcap * rng.uniform(0.25, 0.35)
            self._add_pool(tok, self.sol, DEX_PUMPFUN, created, liq, 1.0)
        elif kind == "grad":
            grad_at = created + min(age * rng.uniform(0.02, 0.5), 86400.0)
            tok.graduated_at = grad_at
            if rng.random() < 0.3:  # the old, completed bonding curve is still listed
                curve = self._add_pool(tok, self.sol, DEX_PUMPFUN, created, 0.0, 0.0)
                curve.completed = True
            main = self._add_pool(tok, self.sol, DEX_PUMPSWAP, grad_at, mcap * rng.uniform(0.06, 0.25), 1.0)
            tok.graduated_pool = main.address
            for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
                dex = rng.choices(OTHER_DEXES, OTHER_DEX_WEIGHTS)[0]
                quote = self.usdc if rng.random() < 0.2 else self.sol
                pc = grad_at + rng.uniform(0, max(60.0, t0 - grad_at))
                self._add_pool(tok, quote, dex, min(pc, t0 - 30), main.liq0 * rng.uniform(0.05, 0.6),
                               rng.uniform(0.05, 0.5))
        else:
            n = rng.choice((1, 1, 2, 2, 3))
            first_liq = mcap * rng.uniform(0.04, 0.2)
            for j in range(n):
                dex = rng.choices(OTHER_DEXES, OTHER_DEX_WEIGHTS)[0]
                quote = self.usdc if rng.random() < 0.2 else self.sol
                pc = created if j == 0 else created + rng.uniform(0, age * 0.9)
                liq = first_liq if j == 0 else first_liq * rng.uniform(0.05, 0.8)
                self._add_pool(tok, quote, dex, pc, liq, 1.0 if j == 0 else rng.uniform(0.05, 0.7))
        # Activity: USD volume per minute across all pools; a day's volume is 0.3x to 6x the liquidity.
        liq_total = max(sum(p.liq0 for p in tok.pools), 2_000.0)
        tok.base_activity = liq_total * math.exp(rng.uniform(math.log(0.3), math.log(6.0))) / 1440.0
        if kind == "curve":
            tok.base_activity *= 3.0
        tok.activity = tok.base_activity
        share_sum = sum(p.share for p in tok.pools) or 1.0
        for p in tok.pools:
            p.share /= share_sum
        self.tokens.append(tok)
        self.by_mint[mint] = tok
        return tok

    def _add_pool(self, base: Token, quote: Token, dex: tuple, created: float, liq: float, share: float,
                  basis: float | None = None) -> Pool:
        rng = self.rng
        created = float(int(created))
        labels = list(dex[1]) if dex[1] else None
        pool = Pool(
            address=random_address(rng), base=base, quote=quote, ds_dex=dex[0], ds_labels=labels,
            gt_dex=dex[2], created_at=created, created_iso=iso(created), created_ms=int(created * 1000),
            basis=basis if basis is not None else 1.0 + rng.gauss(0, 0.002), share=share, liq0=liq,
            base0=base.price, quote0=quote.price, liquidity=liq, vols=[0.0] * 6,
            avg_trade=math.exp(rng.uniform(math.log(40), math.log(900))) if not base.special else 4000.0,
            buy_ratio=rng.uniform(0.42, 0.6), ds_tick=0, gt_tick=0, ds_hidden=False, gt_hidden=False,
            completed=False, order_key=rng.random(),
            q_null_price=rng.random() < 0.03, q_null_fields=rng.random() < 0.04,
            q_null_labels=rng.random() < 0.05, q_no_liquidity=dex is DEX_PUMPFUN and rng.random() < 0.5,
            q_drop=rng.choice(("m5", "h6", "h24")) if rng.random() < 0.06 else None,
            gt_neg_reserve=rng.random() < 0.015, gt_vol_factor=rng.uniform(0.96, 1.04),
            gt_phase=rng.randrange(3), gt_state=None,
        )
        base.pools.append(pool)
        quote.quote_pools.append(pool)
        self.pools[pool.address] = pool
        return pool

    def _quote_side_pairs(self) -> None:
        """Pools where a tracked meme coin is the QUOTE side (another meme coin is the base)."""
        rng = self.rng
        candidates = [t for t in self.tokens if not t.on_curve]
        for quote in rng.sample(candidates, max(1, len(candidates) // 25)):
            base = rng.choice(candidates)
            if base is quote:
                continue
            main = max(base.pools, key=lambda p: p.liq0)
            pc = max(base.created_at, quote.created_at) + 3600 * rng.uniform(1, 48)
            self._add_pool(base, quote, rng.choice((DEX_METEORA_DLMM, DEX_RAYDIUM_CPMM, DEX_METEORA)),
                           min(pc, self.created_at - 600), main.liq0 * rng.uniform(0.02, 0.15), 0.05)
            total = sum(p.share for p in base.pools)
            for p in base.pools:
                p.share /= total

    def _special_visibility(self) -> None:
        """Tokens only some sources know."""
        rng = self.rng
        pool_tokens = list(self.tokens)
        rng.shuffle(pool_tokens)
        n = len(pool_tokens)
        k = max(1, n // 100)
        jup_only = pool_tokens[:k]  # on Jupiter only: no pool on DexScreener/GeckoTerminal, ever
        gt_only = pool_tokens[k : k + max(1, n * 3 // 200)]
        ds_only = pool_tokens[k + max(1, n * 3 // 200) : k + 2 * max(1, n * 3 // 200)]
        unpriced = pool_tokens[k + 2 * max(1, n * 3 // 200) : k + 2 * max(1, n * 3 // 200) + max(1, n // 50)]
        for t in jup_only:
            for p in t.pools:
                p.ds_hidden = p.gt_hidden = True
        for t in gt_only:
            for p in t.pools:
                p.ds_hidden = True
        for t in ds_only:
            t.jup_known = False
            for p in t.pools:
                p.gt_hidden = True
        for t in unpriced:
            t.jup_priced = False
        # The newest launches are not indexed by DexScreener/GeckoTerminal yet (Jupiter sees them).
        newest = sorted((t for t in self.tokens if t.on_curve), key=lambda t: -t.created_at)[:3]
        for j, t in enumerate(newest):
            for p in t.pools:
                p.ds_tick = 2 + j
                p.gt_tick = 4 + j
        # A few tokens are quiet from the start.
        for t in rng.sample(self.tokens, max(1, n // 25)):
            t.quiet = True
            t.quiet_ticks = rng.randrange(0, 50)

    def _foreign(self) -> ForeignItem:
        rng = self.rng
        return ForeignItem(rng.choice(_FOREIGN_CHAINS), "0x" + "%040x" % rng.getrandbits(160),
                           rng.choice((10, 30, 50, 100, 500)), rng.getrandbits(32))

    def _init_feeds(self, t0: float) -> None:
        rng = self.rng
        # DexScreener feeds: newest first, 30 items each, a few for other chains.
        by_age = sorted(self.tokens, key=lambda t: -t.created_at)
        young = by_age[: len(by_age) // 2]

        def pick() -> Token:
            return rng.choice(young) if rng.random() < 0.6 else rng.choice(self.tokens)

        self.profiles: list[Token | ForeignItem] = []
        seen: set[int] = set()
        while len(self.profiles) < 30:
            if rng.random() < 0.1:
                self.profiles.append(self._foreign())
                continue
            t = pick()
            if id(t) in seen:
                continue
            seen.add(id(t))
            t.profile = True
            t.has_info = True
            self.profiles.append(t)
        self.boosts: list[tuple[Token | ForeignItem, int]] = []
        while len(self.boosts) < 30:
            if rng.random() < 0.1:
                f = self._foreign()
                self.boosts.append((f, min(f.total, 50)))
                continue
            t = pick()
            amount = rng.choice((10, 10, 30, 50, 100, 500))
            t.boost_active += amount
            t.boost_total += amount + rng.choice((0, 0, 10, 30, 100, 500))
            self.boosts.append((t, amount))
        self.top_foreign = [self._foreign() for _ in range(3)]
        for f in self.top_foreign:
            f.total = rng.choice((500, 1000, 2000))
        # Tokens that had boosts earlier (for the top list).
        for t in rng.sample(self.tokens, len(self.tokens) // 10):
            if t.boost_total == 0:
                t.boost_total = rng.choice((10, 30, 50, 100, 500))

    def _init_history(self) -> None:
        """Start every window in a plausible state instead of at zero."""
        rng = self.rng
        t0 = self.created_at
        for t in [self.sol, *self.tokens]:
            age = t0 - t.created_at
            for i, w in enumerate(WIN_SECONDS):
                if age < w and not t.special:
                    # Young token: its reference is the launch price.
                    t.refs[i] = t.price / math.exp(rng.gauss(0.6, 0.6) * min(1.0, age / 3600 + 0.2))
                else:
                    t.refs[i] = t.price / math.exp(rng.gauss(0, t.sigma * math.sqrt(w / self.tick_seconds) * 0.8))
                t.holder_refs[i] = int(t.holders / (1 + rng.uniform(-0.001, 0.004) * math.sqrt(w / 300)))
            for p in t.pools:
                if p.completed:
                    continue
                pool_age = t0 - p.created_at
                a = t.activity * p.share * (0.01 if t.quiet else 1.0)
                for i, w in enumerate(WIN_SECONDS):
                    span = min(w, max(pool_age, 1.0)) / 60.0
                    p.vols[i] = a * span * math.exp(rng.gauss(0, 0.25))
                for i in range(1, 6):
                    if p.vols[i] < p.vols[i - 1]:
                        p.vols[i] = p.vols[i - 1]
                self._capture_gt(p)

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
        """GeckoTerminal's (slightly older, slightly different) view of a pool."""
        t = p.base
        p.gt_state = (
            p.price_usd, p.quote.price, self.sol.price, p.liquidity,
            tuple(v * p.gt_vol_factor for v in p.vols), tuple(t.change(i) for i in range(6)),
            tuple(p.trades(i) for i in range(6)),
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
        live = [p for p in t.pools if not p.completed]
        return max(live, key=lambda p: p.liquidity) if live else None

    # ------------------------------------------------------------------------------------------------
    # discovery lists (the truth behind every discovery endpoint)
    # ------------------------------------------------------------------------------------------------
    def ds_profiles(self) -> list[Token | ForeignItem]:
        return list(self.profiles)

    def ds_boosts_latest(self) -> list[tuple[Token | ForeignItem, int]]:
        return list(self.boosts)

    def ds_boosts_top(self) -> list[Token | ForeignItem]:
        def build() -> list[Token | ForeignItem]:
            ranked = sorted((t for t in self.tokens if t.boost_total > 0), key=lambda t: (-t.boost_total, t.index))
            out: list[Token | ForeignItem] = list(ranked[:27])
            for j, f in enumerate(self.top_foreign):
                out.insert(min(len(out), 4 + 9 * j), f)
            return out[:30]

        return self.cached(("ds_boosts_top",), build)

    def gt_trending(self, duration: str = "24h") -> list[Pool]:
        """Up to 200 GeckoTerminal pools (10 pages of 20), trending first."""
        i = dict(GT_DURATIONS)[duration]
        d = [k for k, _ in GT_DURATIONS].index(duration)

        def build() -> list[Pool]:
            scored = []
            for t in self.tokens:
                hype = t.gt_hype[d]
                for p in t.pools:
                    if self.gt_visible(p):
                        st = p.gt_state
                        scored.append((st[4][i] * (1.0 + abs(st[5][i]) / 10.0) * hype, p))
            scored.sort(key=lambda x: -x[0])
            return [p for _, p in scored[:200]]

        return self.cached(("gt_trending", duration), build)

    def gt_new_pools(self) -> list[Pool]:
        """GeckoTerminal pools created in the last 48 h, newest first, up to 200."""

        def build() -> list[Pool]:
            cutoff = self.now() - NEW_POOL_WINDOW_S
            pools = [p for p in self.pools.values()
                     if p.created_at >= cutoff and not p.base.special and self.gt_visible(p)]
            pools.sort(key=lambda p: (-p.created_at, p.address))
            return pools[:200]

        return self.cached(("gt_new_pools",), build)

    def jup_top(self, category: str, window: str, limit: int = 100) -> list[Token]:
        i = JUP_WINDOW_INDEX[window]
        w = [k for k, _ in JUP_WINDOWS].index(window)

        def build() -> list[Token]:
            known = [t for t in self.tokens if t.jup_known]
            if category == "toptraded":
                key = lambda t: -t.volume(i)  # noqa: E731
            elif category == "toporganicscore":
                key = lambda t: -(t.organic_score * t.organic_jitter[w])  # noqa: E731
            elif category == "toptrending":
                # momentum, with a strong lean towards young tokens
                young = self.now() - 3 * 86400

                def key(t: Token) -> float:
                    if t.quiet:
                        return 0.0
                    boost = 4.0 if t.created_at > young else 1.0
                    return -(t.hype[w] * boost * math.exp(max(-3.0, min(3.0, t.change(i) / 50.0))))
            else:
                raise KeyError(category)
            known.sort(key=lambda t: (key(t), t.index))
            return known[:100]

        return self.cached(("jup_top", category, window), build)[:limit]

    def jup_recent(self) -> list[Token]:
        def build() -> list[Token]:
            known = [t for t in self.tokens if t.jup_known]
            known.sort(key=lambda t: (-min(p.created_at for p in t.pools), t.index))
            return known[:30]

        return self.cached(("jup_recent",), build)

    def discoverable(self) -> set[str]:
        """Every mint that any discovery endpoint (any page, window or duration) can return now."""
        out: set[str] = set()
        for item in self.ds_profiles():
            if isinstance(item, Token):
                out.add(item.mint)
        for item, _ in self.ds_boosts_latest():
            if isinstance(item, Token):
                out.add(item.mint)
        for item in self.ds_boosts_top():
            if isinstance(item, Token):
                out.add(item.mint)
        for duration, _ in GT_DURATIONS:
            out.update(p.base.mint for p in self.gt_trending(duration))
        out.update(p.base.mint for p in self.gt_new_pools())
        for category in JUP_CATEGORIES:
            for window, _ in JUP_WINDOWS:
                out.update(t.mint for t in self.jup_top(category, window))
        out.update(t.mint for t in self.jup_recent())
        return out

    def first_calls_discoverable(self) -> set[str]:
        """Mints returned by one call each to the nine main discovery endpoints (1h lists, page 1)."""
        out: set[str] = set()
        out.update(t.mint for t in self.ds_profiles() if isinstance(t, Token))
        out.update(t.mint for t, _ in self.ds_boosts_latest() if isinstance(t, Token))
        out.update(t.mint for t in self.ds_boosts_top() if isinstance(t, Token))
        for category in JUP_CATEGORIES:
            out.update(t.mint for t in self.jup_top(category, "1h"))
        out.update(t.mint for t in self.jup_recent())
        out.update(p.base.mint for p in self.gt_trending("24h")[:20])
        out.update(p.base.mint for p in self.gt_new_pools()[:20])
        return out

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

