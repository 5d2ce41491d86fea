"""`python -m app --demo` with default settings: what a newcomer sees after the README's first command."""

from __future__ import annotations

import time

import httpx

from tests.service_process import DemoProcess


def test_demo_serves_at_least_200_tokens_within_30_seconds_with_default_settings(tmp_path):
    defaults = {name: "" for name in ("REFRESH_INTERVAL_S", "DISCOVERY_INTERVAL_S", "CACHE_TTL_S", "HEARTBEAT_S",
                                      "RATE_LIMITS")}  # empty means "use the default"
    started = time.monotonic()
    process = DemoProcess(tmp_path, **defaults).start(timeout=30)
    try:
        deadline = started + 30
        total = 0
        while time.monotonic() < deadline:
            total = httpx.get(f"{process.url}/api/tokens", params={"limit": "1"}).json()["total"]
            if total >= 200:
                break
            time.sleep(0.2)  # polling the service's answer, not waiting for an event
        assert total >= 200, f"only {total} tokens after 30 s"
        page = httpx.get(f"{process.url}/").text
        assert "<table" in page
    finally:
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: -15 is a clean exit here.
        assert process.stop() in (0, -15)
