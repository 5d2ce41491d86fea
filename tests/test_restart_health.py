"""After a restart, /health says how old the restored data really is (not "unknown", not "fresh")."""

from __future__ import annotations

import time

import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from app.model import SOURCES
from tests.support import fast_settings, running_service, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_age_after_a_restart_is_the_restored_datas_age(tmp_path):
    market = Market(seed=11, n_tokens=40)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path / "data"))
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            ingest = app.state.service.ingest
            await wait_for(lambda: ingest.cycles >= 2 and ingest.last_success(), message="data")
        fetched_at = ingest.last_success()  # the saved data's last refresh (the snapshot is saved at shutdown)

        for source in SOURCES:
            market.faults.set(source, "500")  # nothing fresh after the restart
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            health = (await client.get(f"{base}/health")).json()
            assert health["stale"] is True and health["status"] == "degraded" and health["tokens"] > 0
            assert health["age_s"] is not None
            assert health["age_s"] == pytest.approx(time.time() - fetched_at, abs=1.0)
            first = health["age_s"]

            async def older():
                age = (await client.get(f"{base}/health")).json()["age_s"]
                return age if age > first + 0.5 else None

            await wait_for(older, timeout=10, message="age_s growing while nothing is fresh")
            assert all(s["last_success"] is None for s in health["sources"].values())  # this process: none yet
