"""The market rendered in each upstream's exact JSON shapes (shared/upstreams.md): one module per upstream
(shapes_dexscreener, shapes_geckoterminal, shapes_jupiter), gathered here for the server and the tests.
"""

from app.demo.formats import dec, pct, pct_str
from app.demo.shapes_dexscreener import ds_feed_item, ds_pair, ds_token_pairs
from app.demo.shapes_geckoterminal import (
    gt_included_dex,
    gt_included_token,
    gt_known,
    gt_ohlcv,
    gt_pool,
    gt_pool_list,
    gt_sides,
    gt_simple_price,
    gt_timeframe_ok,
    gt_token,
    gt_token_pools,
    gt_token_ref,
)
from app.demo.shapes_jupiter import jup_price, jup_token

__all__ = [
    "dec", "pct", "pct_str", "ds_feed_item", "ds_pair", "ds_token_pairs", "gt_included_dex", "gt_included_token",
    "gt_known", "gt_ohlcv", "gt_pool", "gt_pool_list", "gt_sides", "gt_simple_price", "gt_timeframe_ok", "gt_token",
    "gt_token_pools", "gt_token_ref", "jup_price", "jup_token",
]
