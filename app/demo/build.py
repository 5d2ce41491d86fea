"""How the simulated market is made: its tokens, their pools, who shows what, feeds and a plausible past.

`MarketBuilder` is the construction half of `app.demo.market.Market` (a mixin: it fills the market's own
state); the walk, the lookups and the discovery lists are in `Market` and `MarketLists`.
"""

from __future__ import annotations

import math
import random

from app.demo.model import (
    _ADJ,
    _FOREIGN_CHAINS,
    _NOUN,
    _TAIL,
    DEX_METEORA,
    DEX_METEORA_DLMM,
    DEX_PUMPFUN,
    DEX_PUMPSWAP,
    DEX_RAYDIUM_CPMM,
    GRADUATION_MCAP_USD,
    OTHER_DEX_WEIGHTS,
    OTHER_DEXES,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    WIN_SECONDS,
    ForeignItem,
    Pool,
    Token,
    iso,
    random_address,
)


class MarketBuilder:
    """Construction of the market's state (see app.demo.market.Market for the attributes it fills)."""

    rng: random.Random
    tokens: list[Token]
    pools: dict[str, Pool]
    by_mint: dict[str, Token]
    created_at: float
    tick_seconds: float
    sol: Token
    usdc: Token


    def _make_special(self, mint: str, name: str, symbol: str, decimals: int, price: float, created: float) -> Token:
        return Token(
            mint=mint, name=name, symbol=symbol, decimals=decimals, token_program=TOKEN_PROGRAM,
            created_at=created, created_iso=iso(created), created_iso_ms=iso(created, ms=True), launchpad=None,
            dev=None, twitter=None, website=None, telegram=None, description=None, header=None,
            total_supply=6e8 if symbol == "SOL" else 1e10, circ_supply=5e8 if symbol == "SOL" else 1e10,
            price=price, price0=price, sigma=0.0015 if symbol == "SOL" else 0.0, refs=[price] * 6,
            activity=0.0, base_activity=0.0, liq_drift=1.0, pools=[], quote_pools=[], holders=10_000_000,
            holder_refs=[10_000_000] * 6, organic_score=99.0, organic_jitter=(1.0,) * 4, hype=(0.0,) * 4,
            gt_hype=(0.0,) * 4,
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
            description=(f"{name} (${symbol}) is the {rng.choice(_ADJ).lower()}est "
                         f"{rng.choice(_NOUN).lower()} on Solana.") if rng.random() < 0.7 else None,
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
                  basis: float | None = None, rng: random.Random | None = None) -> Pool:
        rng = rng or self.rng
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
        return ForeignItem(rng.choice(_FOREIGN_CHAINS), f"0x{rng.getrandbits(160):040x}",
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

    def _quirks(self) -> None:
        """What upstreams do that a client must not be fooled by, drawn from a generator of their own (the
        rest of the market is the same with or without them):

        - junk-quoted pools: a few tokens get a small pool quoted in an illiquid token, which DexScreener and
          GeckoTerminal report with JUNK_FACTOR times its liquidity and price (more liquid, on paper, than
          the token's real main pool); one token has no other pool either of them shows;
        - GeckoTerminal orients some SOL- and USDC-quoted pools the other way round (the token as quote).
        """
        rng = random.Random(self.seed ^ 0x9A7C)
        self.junk = self._make_special(random_address(rng), "Junk Index", "JUNK", 6, 0.00042,
                                       self.created_at - 400 * 86400)
        self.junk.image_key = self.junk.mint
        self.by_mint[self.junk.mint] = self.junk
        candidates = [t for t in self.tokens if not t.on_curve and len([p for p in t.pools if not p.completed]) >= 2]
        chosen = rng.sample(candidates, min(len(candidates), max(2, len(candidates) // 20)))
        for t in chosen:
            main = max((p for p in t.pools if not p.completed), key=lambda p: p.liq0)
            pool = self._add_pool(t, self.junk, DEX_METEORA, max(t.created_at, self.created_at - 30 * 86400),
                                  main.liq0 * rng.uniform(0.03, 0.06), 0.0, rng=rng)
            pool.junk = True
            pool.q_null_price = pool.q_null_fields = pool.q_no_liquidity = pool.gt_neg_reserve = False
            for i, w in enumerate(WIN_SECONDS):
                pool.vols[i] = t.activity * 0.02 * min(w, 86400) / 60.0 * math.exp(rng.gauss(0, 0.25))
            for i in range(1, 6):
                pool.vols[i] = max(pool.vols[i], pool.vols[i - 1])
            self._capture_gt(pool)
        if chosen:
            for p in chosen[0].pools:  # this token's only pool on DexScreener or GeckoTerminal: the junk one
                if not p.junk:
                    p.ds_hidden = p.gt_hidden = True
        for p in self.pools.values():
            if p.quote in (self.sol, self.usdc) and not p.base.special and p.gt_dex != "pump-fun" \
                    and rng.random() < 0.12:
                p.gt_reversed = True
                self._capture_gt(p)

    def _capture_gt(self, p: Pool) -> None:  # pragma: no cover - Market's
        raise NotImplementedError
