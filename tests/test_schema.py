"""One record schema (app.schema): the merge, OpenAPI, the query columns and the snapshot file agree with it."""

from __future__ import annotations

import logging

import orjson

from app import query
from app.api.openapi import build_spec
from app.ingest.merge import TokenState, merge
from app.model import WSOL_MINT, PoolObservation, TokenInfo, WindowStats
from app.schema import FIELDS, RECORD_FIELDS, RECORD_VERSION, SORT_COLUMNS, STAT_FIELDS, WINDOWS
from app.snapshots import DiskSnapshots
from app.store.base import Version

T0 = 1_790_000_000.0
MINT = "DoGe" + "x" * 36 + "pump"


def _states() -> list[TokenState]:
    pooled = TokenState(MINT)
    pooled.add_pool(PoolObservation("dexscreener", "P" * 44, MINT, T0, "Doge", "DOGE", WSOL_MINT, "SOL", "Raydium",
                                    1.5, 0.01, 1000.0, 1e6, 1e6, T0 - 3600, None,
                                    {"5m": WindowStats(10.0, 1.0, 2, 3), "24h": WindowStats(500.0, 5.0, 40, 30)}))
    poolless = TokenState("B" * 44)
    poolless.infos["jupiter"] = TokenInfo("jupiter", "B" * 44, T0, "Bonk", "BONK", None, 0.1, 1e5, 1e6, 1e6)
    return [pooled, poolless]


def test_the_merge_makes_records_with_the_schema_fields_in_the_schema_order():
    for state in _states():
        record = merge(state, 150.0, T0)
        assert tuple(record) == RECORD_FIELDS
        assert tuple(record["stats"]) == WINDOWS
        assert all(tuple(window) == STAT_FIELDS for window in record["stats"].values())
        assert tuple(orjson.loads(orjson.dumps(record))) == RECORD_FIELDS  # the encoded order too


def test_openapi_describes_exactly_the_schema_fields():
    token = build_spec()["components"]["schemas"]["Token"]
    assert token["required"] == list(RECORD_FIELDS) == list(token["properties"])
    assert len({f.name for f in FIELDS}) == len(FIELDS)


def test_every_sort_reads_a_record_figure():
    assert set(SORT_COLUMNS) == set(query.SORTS)
    for column in SORT_COLUMNS.values():
        assert column in RECORD_FIELDS or column in STAT_FIELDS or column in ("txns", "created")


def test_a_snapshot_of_another_record_version_is_ignored_with_a_log_line(tmp_path, caplog):
    from diskcache import Cache

    record = merge(_states()[0], 150.0, T0)
    version = Version("e", 1, {MINT: record}, {MINT: orjson.dumps(record)}, T0, sol_usd=150.0)
    with Cache(str(tmp_path / "snapshot")) as cache:
        snapshots = DiskSnapshots(cache)
        snapshots.save_now(version, {}, T0)
        loaded = snapshots.load()
        assert loaded is not None and loaded.records == {MINT: record} and loaded.sol_usd == 150.0
        # The same blob as a service whose records had another shape would have written it.
        saved = orjson.loads(cache.get(DiskSnapshots.KEY))
        assert saved["record_version"] == RECORD_VERSION
        saved["record_version"] = RECORD_VERSION - 1
        cache.set(DiskSnapshots.KEY, orjson.dumps(saved))
        with caplog.at_level(logging.WARNING, logger="app.history"):
            assert snapshots.load() is None
    assert [r for r in caplog.records if "record version" in r.getMessage()]
