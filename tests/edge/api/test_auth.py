"""`api.token`: the query API needs the bearer token; health and metrics never do."""

from __future__ import annotations

from pathlib import Path

import pytest

from refinery_py.api.auth import bearer_token_auth
from tests.edge.api.harness import running_api
from tests.edge.store.builders import TraceSpec

TOKEN = "s3cret-token"


async def test_the_query_api_answers_401_without_the_token_and_200_with_it(
    tmp_path: Path,
) -> None:
    async with running_api(tmp_path, token=TOKEN) as api:
        api.store(TraceSpec(1))
        for path in (
            "/api/v1/traces",
            "/api/v1/traces/" + "00" * 15 + "01",
            "/api/v1/customers",
            "/api/v1/customers/acme/summary",
            "/api/v1/nothing-here",
        ):
            for token in (None, "wrong", TOKEN + "x", ""):
                status, body = await api.get(path, token=token)
                assert status == 401, (path, token)
                assert "bearer token" in body["error"]
        async with api.session.get(api.base_url + "/api/v1/traces") as response:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await api.ok("/api/v1/traces", token=TOKEN)
        assert len(body["traces"]) == 1
        summary = await api.ok("/api/v1/customers/acme/summary", token=TOKEN)
        assert summary["kept_traces"] == 1


async def test_health_and_metrics_stay_open_with_a_token(tmp_path: Path) -> None:
    async with running_api(tmp_path, token=TOKEN) as api:
        for path in ("/alive", "/ready"):
            status, _ = await api.get(path)
            assert status == 200, path
        async with api.session.get(api.base_url + "/metrics") as response:
            assert response.status == 200
            assert "refinery_build_info" in await response.text()


async def test_without_a_token_the_api_is_open(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        await api.ok("/api/v1/traces")
        await api.ok("/api/v1/traces", token="anything")


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        bearer_token_auth("")
