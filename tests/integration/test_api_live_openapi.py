"""The real server (`tailor api`, granian) publishes an accurate OpenAPI document, and schemathesis,
generating requests from it (valid and invalid), finds no 5xx and no response that contradicts it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import api_process
import httpx
import pytest
from api_harness import ADMIN_TOKEN

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def server(redis_url: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`tailor api` in its own process: the URLs of its public port and of its admin port."""
    with api_process.serve(redis_url, kafka_bootstrap, tmp_path / "api.log") as served:
        yield served.url, served.admin


def test_each_port_publishes_an_openapi_document_of_its_own_routes(server: tuple[str, str]) -> None:
    public, admin = server
    document = httpx.get(f"{public}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/v1/decide", "/v1/feedback", "/v1/events", "/v1/graphql", "/openapi.json", "/sdk/tailor.js",
        "/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/{key}",
    }  # fmt: skip
    assert set(httpx.get(f"{admin}/openapi.json").json()["paths"]) == {
        "/v1/explain", "/v1/profiles/{user}", "/healthz", "/readyz", "/readyz/collector", "/metrics",
        "/openapi.json",
    }  # fmt: skip
    slot = document["paths"]["/v1/decide"]["get"]["parameters"][0]["schema"]["items"]
    assert slot["enum"] == ["hero"]  # the live ruleset's slots


def schemathesis(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(api_process.BIN / "schemathesis"), "run", f"{url}/openapi.json", "--no-color",
         "-H", f"Authorization: Bearer {ADMIN_TOKEN}", "--max-examples", "40", "--seed", "20261129",
         *options],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_schemathesis_finds_no_server_error_and_no_contract_violation(server: tuple[str, str]) -> None:
    for url in server:  # the public port, then the admin port
        result = schemathesis(url, "--checks", "all", "--exclude-path", "/v1/events")
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_schemathesis_finds_no_server_error_and_no_contract_violation_in_event_collection(
    server: tuple[str, str],
) -> None:
    """/v1/events on its own (it produces to Kafka, so it is slower): every check, positive data too —
    whatever the published JSON Schema accepts, the collector accepts."""
    result = schemathesis(server[0], "--checks", "all", "--include-path", "/v1/events")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
