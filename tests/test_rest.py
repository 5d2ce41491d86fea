"""REST behaviour a client sees: the envelope, errors, ETag/304, cursor walks on a moving market, metrics."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from tests.support import fast_settings, running_service, wait_for

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def service():
    market = Market(seed=21, n_tokens=150)
    async with serve_market(market, tick_interval=0.2) as upstream:
        async with running_service(fast_settings(upstream)) as (base, app):
            async with httpx.AsyncClient(base_url=base) as client:
                await wait_for(lambda: _ready(client), timeout=20, message="ready")
                yield client, app


async def _ready(client):
    return (await client.get("/ready")).status_code == 200


@pytest.mark.parametrize("query,param", [
    ("sort=hot", "sort"), ("window=2d", "window"), ("order=up", "order"), ("limit=0", "limit"),
    ("limit=101", "limit"), ("limit=x", "limit"), ("min_liquidity_usd=-1", "min_liquidity_usd"),
    ("max_age_h=0", "max_age_h"), ("min_volume_usd=nan", "min_volume_usd"), ("colour=red", "colour"),
    ("sort=volume&sort=price", "sort"), ("cursor=garbage", "cursor"),
])
async def test_bad_parameter_is_a_400_naming_it(service, query, param):
    client, _ = service
    response = await client.get(f"/api/tokens?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["code"] in ("invalid_param", "invalid_cursor") and error["message"]


async def test_one_token_and_its_errors(service):
    client, _ = service
    first = (await client.get("/api/tokens?limit=1")).json()["data"][0]
    response = await client.get(f"/api/tokens/{first['token_address']}")
    assert response.status_code == 200 and response.json()["token_address"] == first["token_address"]
    missing = await client.get("/api/tokens/" + "1" * 44)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = await client.get("/api/tokens/not-an-address")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_address"


async def test_etag_gives_304_until_the_data_changes(service):
    client, app = service
    store = app.state.service.store
    async def unchanged_pair():
        first = await client.get("/api/tokens?sort=liquidity&limit=5")
        seq = store.latest().seq
        again = await client.get("/api/tokens?sort=liquidity&limit=5",
                                 headers={"If-None-Match": first.headers["etag"]})
        return (first, again) if store.latest().seq == seq == first.json()["seq"] else None

    first, again = await wait_for(unchanged_pair, timeout=10, message="two requests within one version")
    assert first.headers["etag"].startswith(f'"{first.json()["epoch"]}:{first.json()["seq"]}')
    assert again.status_code == 304 and again.content == b""
    other_view = await client.get("/api/tokens?sort=price&limit=5", headers={"If-None-Match": first.headers["etag"]})
    assert other_view.status_code == 200  # the ETag names the query too
    seq = first.json()["seq"]
    await wait_for(lambda: store.latest().seq > seq, timeout=10, message="a new version")
    later = await client.get("/api/tokens?sort=liquidity&limit=5", headers={"If-None-Match": first.headers["etag"]})
    assert later.status_code == 200


async def test_a_slow_cursor_walk_sees_one_version_while_data_moves(service):
    client, app = service
    store = app.state.service.store
    body = (await client.get("/api/tokens?sort=price_change&window=5m&limit=7")).json()
    seq, total = body["seq"], body["total"]
    walked = [r["token_address"] for r in body["data"]]
    cursor = body["next_cursor"]
    pages = 1
    while cursor:
        # Wait for the market to move between pages so every page is read on a newer version.
        current = store.latest().seq
        await wait_for(lambda: store.latest().seq > current, timeout=10, message="a new version")
        page = (await client.get("/api/tokens", params={"sort": "price_change", "window": "5m", "limit": "7",
                                                         "cursor": cursor})).json()
        assert page["seq"] == seq and page["total"] == total
        walked.extend(r["token_address"] for r in page["data"])
        cursor = page["next_cursor"]
        pages += 1
        if pages >= 6:
            break
    assert store.latest().seq > seq + 4
    assert len(walked) == len(set(walked))  # no duplicates
    pinned = store.get(seq)
    from app import query
    expected = query.filtered(pinned, query.parse_view({"sort": "price_change", "window": "5m"}))
    assert walked == expected[: len(walked)]  # no gaps: exactly the first version's order


async def test_metrics_and_health(service):
    client, _ = service
    address = (await client.get("/api/tokens")).json()["data"][0]["token_address"]
    await client.get(f"/api/tokens/{address}/history")
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{route="/api/tokens",status="200"}' in text
    assert 'http_requests_total{route="/api/tokens/{address}/history",status="200"}' in text  # not the token's
    assert "upstream_calls_total" in text and "ingest_cycle_duration_seconds" in text
    health = (await client.get("/health")).json()
    assert health["status"] == "ok" and health["tokens"] > 100
    for source in ("dexscreener", "geckoterminal", "jupiter"):
        entry = health["sources"][source]
        assert entry["ok"] is True and 0 < entry["requests_last_min"] <= entry["budget_per_min"]


async def test_every_metric_exposed_is_documented_and_every_documented_one_exposed(service):
    client, _ = service
    text = (await client.get("/metrics")).text
    exposed = {name for name in re.findall(r"^# HELP (\S+)", text, re.M) if not name.endswith("_created")}
    api = (ROOT / "docs" / "API.md").read_text()
    section = api[api.index("### `GET /metrics`"):api.index("## 5.")]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    assert exposed == documented


async def test_every_error_on_every_path_is_the_json_shape(service):
    client, _ = service
    for path in ("/nope", "/api", "/api/tokens/x/y", "/static/index.html"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "not_found"
    wrong = await client.post("/api/tokens", content=b"{}")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]
    address = (await client.get("/api/tokens?limit=1")).json()["data"][0]["token_address"]
    for path in (f"/api/tokens/{address}", "/health", "/ready", "/metrics", "/openapi.json", "/api/alerts"):
        response = await client.get(path, params={"foo": "1"})
        assert response.status_code == 400, path
        assert response.json()["error"] == {"code": "invalid_param", "message": "unknown parameter 'foo'",
                                            "param": "foo"}


async def test_if_none_match_takes_lists_and_weak_tags_and_a_token_gives_304_while_it_is_unchanged(service):
    client, app = service
    store = app.state.service.store
    address = (await client.get("/api/tokens?limit=1")).json()["data"][0]["token_address"]
    first = await client.get(f"/api/tokens/{address}")
    etag = first.headers["etag"]
    assert (await client.get(f"/api/tokens/{address}", headers={"If-None-Match": etag})).status_code == 304
    listed = await client.get(f"/api/tokens/{address}", headers={"If-None-Match": f'"other", W/{etag}'})
    assert listed.status_code == 304
    assert (await client.get(f"/api/tokens/{address}", headers={"If-None-Match": '"other"'})).status_code == 200
    # The tag follows the record, not the version: it changes exactly when the record does.
    seq = store.latest().seq
    await wait_for(lambda: store.latest().seq > seq + 2, timeout=10, message="newer versions")
    fresh = await client.get(f"/api/tokens/{address}")
    assert (fresh.headers["etag"] == etag) == (fresh.json() == first.json())

    # /api/tokens: the hot path and the handler both read lists and weak tags.
    async def page_and_repeat():
        page = await client.get("/api/tokens?sort=fdv&limit=3")
        tag = page.headers["etag"]
        hot = await client.get("/api/tokens?sort=fdv&limit=3", headers={"If-None-Match": f'W/{tag}, "x"'})
        return hot if store.latest().seq == page.json()["seq"] else None

    hot = await wait_for(page_and_repeat, timeout=10, message="two requests within one version")
    assert hot.status_code == 304


async def test_metrics_say_whether_the_stream_fast_path_is_on_and_what_it_wrote(service):
    client, _ = service
    text = (await client.get("/metrics")).text
    # The tests run on the pinned uvicorn, where the direct writers work for both kinds.
    assert 'stream_fast_path_available{kind="sse"} 1.0' in text
    assert 'stream_fast_path_available{kind="ws"} 1.0' in text
    assert 'stream_deltas_written_directly{kind="sse"}' in text
    assert 'upstream_items_skipped{source="dexscreener"}' in text
