"""The OpenAPI description holds: schemathesis finds no 5xx and no response that breaks the schema."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.service_process import DemoProcess


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    process = DemoProcess(tmp_path_factory.mktemp("data")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api_schema(service):
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.exclude(path="/api/stream").parametrize()  # an endless stream: tests/test_streams.py covers it
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_description(case):
    # A cursor is opaque and signed: a made-up one is rightly refused (400), though it fits the schema.
    excluded = [schemathesis.checks.positive_data_acceptance] if "cursor" in (case.query or {}) else []
    case.call_and_validate(excluded_checks=excluded)


def test_openapi_is_3_1_and_documents_every_route_and_the_error_shape(service):
    spec = httpx.get(f"{service.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert {"/api/tokens", "/api/tokens/{address}", "/api/alerts", "/api/stream", "/health", "/ready",
            "/metrics"} <= set(spec["paths"])
    names = {p["name"] for p in spec["paths"]["/api/tokens"]["get"]["parameters"]}
    assert {"sort", "window", "order", "limit", "min_liquidity_usd", "min_volume_usd", "min_market_cap_usd",
            "max_market_cap_usd", "max_age_h", "protocol", "q", "cursor"} <= names
    assert spec["components"]["schemas"]["Error"]["properties"]["error"]["required"] == ["code", "message", "param"]
