"""The simulated market behind `python -m app --demo`: DexScreener, GeckoTerminal and Jupiter on loopback.

    market = Market(seed=1, n_tokens=300)
    async with serve_market(market) as running:   # running.dexscreener_url, .geckoterminal_url, .jupiter_url
        ...
"""

from app.demo.market import Market
from app.demo.server import RunningMarket, create_market_app, serve_market

__all__ = ["Market", "RunningMarket", "create_market_app", "serve_market"]
