"""GeckoTerminal's simple token prices (pure; no HTTP here): the cheap batch refresh reads only the prices.

Shapes are those of shared/upstreams.md §2; every figure passes through `values`.
"""

from __future__ import annotations

from app.sources.values import UpstreamFormatError, is_mint, number


def parse_simple_prices(payload: object) -> dict[str, float]:
    """`token_prices` as {mint: USD price}; null or unreadable prices and non-mint keys are left out."""
    data = payload.get("data") if isinstance(payload, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict) or not isinstance(attributes.get("token_prices"), dict):
        raise UpstreamFormatError("geckoterminal simple price: expected data.attributes.token_prices")
    prices: dict[str, float] = {}
    for mint, raw in attributes["token_prices"].items():
        price = number(raw)
        if is_mint(mint) and price is not None:
            prices[mint] = price
    return prices
