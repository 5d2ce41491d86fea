"""CORS_ORIGINS: what a browser page on another site may read (REST, SSE) and open (WebSocket).

The whole service over loopback against the simulated market; the browser's side of CORS is played by
sending the headers a browser sends (`Origin`, a preflight's `Access-Control-Request-*`) and reading the
headers a browser would act on. examples/page.html in real Chromium is tests/test_examples.py.
"""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from app.config import ConfigError, load_settings
from app.demo.market import Market
from app.demo.server import serve_market
from tests.support import fast_settings, running_service, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

GOOD = "https://dash.example.com"
OTHER = "https://evil.example.net"


async def ready(client: httpx.AsyncClient, base: str) -> bool:
    return (await client.get(f"{base}/ready")).status_code == 200


async def first_sse_headers(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Headers:
    async with client.stream("GET", url, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            assert line.startswith("retry:")  # the stream is really flowing
            break
        return response.headers


async def ws_snapshot(url: str, origin: str | None) -> dict:
    headers = {"Origin": origin} if origin else {}
    async with ws_connect(url, additional_headers=headers, open_timeout=5) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": "s", "view": {"limit": 3}}))
        return json.loads(await ws.recv())


async def test_default_any_origin_reads_rest_and_sse_and_preflight_is_answered():
    market = Market(seed=3, n_tokens=30)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream)
        assert settings.cors_origins == ("*",)
        async with running_service(settings) as (base, _), httpx.AsyncClient() as client:
            await wait_for(lambda: ready(client, base), message="ready")
            plain = await client.get(f"{base}/api/tokens")
            assert "access-control-allow-origin" not in plain.headers  # curl and bots get nothing extra

            page = await client.get(f"{base}/api/tokens", headers={"Origin": GOOD})
            assert page.status_code == 200 and page.headers["access-control-allow-origin"] == "*"
            assert "etag" in page.headers["access-control-expose-headers"].lower()
            missing = await client.get(f"{base}/api/tokens/So11111111111111111111111111111111111111112",
                                       headers={"Origin": GOOD})
            assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == "*"

            stream = await first_sse_headers(client, f"{base}/api/stream?limit=2", {"Origin": GOOD})
            assert stream["access-control-allow-origin"] == "*"

            # An EventSource reconnect sends Last-Event-ID, which a browser preflights.
            preflight = await client.options(f"{base}/api/stream", headers={
                "Origin": GOOD, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "last-event-id"})
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == "*"
            assert "GET" in preflight.headers["access-control-allow-methods"]
            assert preflight.headers["access-control-allow-headers"] == "last-event-id"

            assert (await ws_snapshot(base.replace("http", "ws") + "/ws", GOOD))["type"] == "snapshot"


async def test_a_list_allows_only_its_origins_and_the_service_itself():
    market = Market(seed=3, n_tokens=30)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, cors_origins=(GOOD, "http://localhost:3000"))
        async with running_service(settings) as (base, _), httpx.AsyncClient() as client:
            await wait_for(lambda: ready(client, base), message="ready")
            good = await client.get(f"{base}/health", headers={"Origin": GOOD})
            assert good.headers["access-control-allow-origin"] == GOOD
            assert "Origin" in good.headers.get_list("vary")
            other = await client.get(f"{base}/health", headers={"Origin": OTHER})
            assert other.status_code == 200 and "access-control-allow-origin" not in other.headers

            refused = await client.options(f"{base}/api/tokens", headers={
                "Origin": OTHER, "Access-Control-Request-Method": "GET"})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "origin_not_allowed"
            assert "access-control-allow-origin" not in refused.headers
            allowed = await client.options(f"{base}/api/tokens", headers={
                "Origin": "http://LOCALHOST:3000", "Access-Control-Request-Method": "GET"})
            assert allowed.status_code == 204
            assert allowed.headers["access-control-allow-origin"] == "http://LOCALHOST:3000"

            stream = await first_sse_headers(client, f"{base}/api/stream?limit=2", {"Origin": GOOD})
            assert stream["access-control-allow-origin"] == GOOD

            ws = base.replace("http", "ws") + "/ws"
            assert (await ws_snapshot(ws, GOOD))["type"] == "snapshot"
            assert (await ws_snapshot(ws, None))["type"] == "snapshot"  # not a browser: no Origin, no CORS
            assert (await ws_snapshot(ws, base))["type"] == "snapshot"  # the service's own page
            with pytest.raises(InvalidStatus) as info:
                await ws_snapshot(ws, OTHER)
            assert info.value.response.status_code == 403
            assert b"origin_not_allowed" in info.value.response.body


async def test_empty_allows_no_other_origin_but_the_service_page_still_works():
    market = Market(seed=3, n_tokens=30)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, cors_origins=())
        async with running_service(settings) as (base, _), httpx.AsyncClient() as client:
            await wait_for(lambda: ready(client, base), message="ready")
            page = await client.get(f"{base}/api/tokens", headers={"Origin": GOOD})
            assert "access-control-allow-origin" not in page.headers
            preflight = await client.options(f"{base}/api/tokens", headers={
                "Origin": GOOD, "Access-Control-Request-Method": "GET"})
            assert preflight.status_code == 403
            ws = base.replace("http", "ws") + "/ws"
            assert (await ws_snapshot(ws, base))["type"] == "snapshot"
            with pytest.raises(InvalidStatus):
                await ws_snapshot(ws, GOOD)


def test_cors_origins_setting():
    assert load_settings({}, dotenv=None).cors_origins == ("*",)
    assert load_settings({"CORS_ORIGINS": ""}, dotenv=None).cors_origins == ()
    assert load_settings({"CORS_ORIGINS": "https://A.example.com:443/, http://localhost:3000,*"},
                         dotenv=None).cors_origins == ("*",)
    assert load_settings({"CORS_ORIGINS": "https://A.example.com:443/, http://localhost:3000"},
                         dotenv=None).cors_origins == ("https://a.example.com", "http://localhost:3000")
    for bad in ("example.com", "https://example.com/app", "ftp://example.com", "https://*.example.com"):
        with pytest.raises(ConfigError) as info:
            load_settings({"CORS_ORIGINS": bad}, dotenv=None)
        assert str(info.value).startswith("CORS_ORIGINS=") and "\n" not in str(info.value)
