"""GeckoTerminal's small answers: simple token prices and the body of a 429 (pure; no HTTP here).

Shapes are those of shared/upstreams.md §2; every figure passes through `values`.
"""

from __future__ import annotations

from typing import Any

from app.model import TokenInfo, WindowStats
from app.sources.values import Parsed, UpstreamFormatError, is_mint, mapping, number, signed, text

SOURCE = "geckoterminal"


# ---------------------------------------------------------------------------------------------------
# simple price


def _simple_attributes(payload: object) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict) or not isinstance(attributes.get("token_prices"), dict):
        raise UpstreamFormatError("geckoterminal simple price: expected data.attributes.token_prices")
    return attributes


def parse_simple_prices(payload: object) -> dict[str, float]:
    """`token_prices` as {mint: USD price}; null or unreadable prices and non-mint keys are left out."""
    prices: dict[str, float] = {}
    for mint, raw in _simple_attributes(payload)["token_prices"].items():
        price = number(raw)
        if is_mint(mint) and price is not None:
            prices[mint] = price
    return prices


def parse_simple_tokens(payload: object, observed_at: float) -> Parsed:
    """The whole simple-price answer as `TokenInfo`s (price, market cap, 24h volume and change).

    One per mint key of `token_prices`, even when its price is null (the other maps may know more);
    non-mint keys are skipped and counted.
    """
    attributes = _simple_attributes(payload)
    names = ("market_cap_usd", "h24_volume_usd", "h24_price_change_percentage", "total_reserve_in_usd")
    maps = {name: mapping(attributes.get(name)) for name in names}
    infos: list[TokenInfo] = []
    skipped = 0
    for mint, raw in attributes["token_prices"].items():
        if not is_mint(mint):
            skipped += 1
            continue
        window = WindowStats(
            volume_usd=number(maps["h24_volume_usd"].get(mint)),
            price_change=signed(maps["h24_price_change_percentage"].get(mint)),
        )
        infos.append(
            TokenInfo(
                source=SOURCE,
                address=mint,
                observed_at=float(observed_at),
                price_usd=number(raw),
                market_cap_usd=number(maps["market_cap_usd"].get(mint)),
                liquidity_usd=number(maps["total_reserve_in_usd"].get(mint)),
                stats={"24h": window} if window != WindowStats() else {},
            )
        )
    return Parsed(infos, skipped=skipped)


# ---------------------------------------------------------------------------------------------------
# 429


def rate_limit_message(payload: object) -> str:
    """A one-line description of a 429 body, whatever its shape (old with `limit`, new without,
    JSON:API `errors`, plain text). Never raises."""
    try:
        return _rate_limit_message(payload)
    except Exception:  # noqa: BLE001 - a message must always come back
        return "rate limited (429)"


def _rate_limit_message(payload: object) -> str:
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload).decode("utf-8", "replace")
    if isinstance(payload, str):
        return text(payload[:200]) or "rate limited (429)"
    if not isinstance(payload, dict):
        return "rate limited (429)"
    parts: list[str] = []
    status = payload.get("status")
    if isinstance(status, dict):
        code = status.get("error_code")
        message = text(status.get("error_message"))
        if code is not None:
            parts.append(f"error {code}")
        if message:
            parts.append(message)
    errors = payload.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict):
                message = text(error.get("title")) or text(error.get("detail"))
                if message:
                    parts.append(message)
    for key in ("error", "message"):
        message = text(payload.get(key))
        if message:
            parts.append(message)
    limit = payload.get("limit")
    if limit is None and isinstance(status, dict):
        limit = status.get("limit")
    if isinstance(limit, (int, float, str)) and not isinstance(limit, bool):
        parts.append(f"limit {limit}")
    return "; ".join(parts) if parts else "rate limited (429)"
