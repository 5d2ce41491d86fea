"""Alert rules a trader would keep on: crossings only, no alerts on illiquid or trivial-volume tokens, one unit."""

from __future__ import annotations

from typing import Any

from app.alerts import AlertDetector

MINT = "A" * 32 + "Mint"


def record(change_5m: float | None = 0.0, volume_5m: float | None = 100.0, volume_1h: float | None = 1200.0,
           liquidity: float | None = 50_000.0) -> dict[str, Any]:
    stats = {w: {"volume_usd": None, "volume_sol": None, "price_change": None, "buys": None, "sells": None}
             for w in ("5m", "1h", "6h", "24h", "7d")}
    stats["5m"].update(volume_usd=volume_5m, price_change=change_5m)
    stats["1h"].update(volume_usd=volume_1h)
    return {"token_address": MINT, "token_ticker": "AAA", "liquidity_usd": liquidity, "stats": stats}


def detect(detector: AlertDetector, before: dict, after: dict) -> list[dict[str, Any]]:
    return detector.detect({MINT: before}, {MINT: after}, 7, "2026-12-02T00:00:00Z")


def test_a_volume_spike_has_its_ratio_as_value_in_the_unit_of_its_threshold():
    detector = AlertDetector(5, 3, min_volume_usd=1000, min_liquidity_usd=10_000)
    # 5m volume 4,000 against an hourly 12,000 (an average 5m of 1,000): a 4x spike.
    [alert] = detect(detector, record(volume_5m=1000, volume_1h=12_000), record(volume_5m=4000, volume_1h=12_000))
    assert alert["type"] == "volume_spike"
    assert alert["value"] == 4.0 and alert["threshold"] == 3 and alert["volume_usd"] == 4000
    assert alert["seq"] == 7 and alert["window"] == "5m"


def test_no_spike_on_trivial_volume_and_no_alert_on_an_illiquid_token():
    detector = AlertDetector(5, 3, min_volume_usd=1000, min_liquidity_usd=10_000)
    # $3.47 of 5m volume is a 40x "spike" of nothing.
    assert detect(detector, record(volume_5m=0.1, volume_1h=1.04), record(volume_5m=3.47, volume_1h=1.04)) == []
    # A 50% move on a pool with $800 of liquidity is noise.
    assert detect(detector, record(change_5m=1, liquidity=800), record(change_5m=50, liquidity=800)) == []
    assert detect(detector, record(change_5m=1, liquidity=None), record(change_5m=50, liquidity=None)) == []
    # The same move on a liquid token is an alert, in percent against a percent threshold.
    [alert] = detect(detector, record(change_5m=1), record(change_5m=-6.5))
    assert (alert["type"], alert["value"], alert["threshold"]) == ("price_move", -6.5, 5)


def test_an_alert_fires_on_the_crossing_not_while_the_figure_stays_beyond():
    detector = AlertDetector(5, 3)
    assert detect(detector, record(change_5m=6), record(change_5m=7)) == []
    assert [a["type"] for a in detect(detector, record(change_5m=6), record(change_5m=-7))] == ["price_move"]
