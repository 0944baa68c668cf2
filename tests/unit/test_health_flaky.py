"""The flaky demo target: a real HTTP server on 127.0.0.1 that follows its plan."""

from __future__ import annotations

import httpx
import pytest

from health_plugin.flaky import DEFAULT_PLAN, FlakyTarget, run_flaky_target

pytestmark = pytest.mark.anyio


async def test_flaky_target_answers_by_its_plan(anyio_backend: str) -> None:
    plan = [("ok", 2), ("error", 1), ("hang", 1), ("ok", 1)]
    async with FlakyTarget(plan) as target, httpx.AsyncClient() as client:
        assert target.url.startswith("http://127.0.0.1:")
        codes = [(await client.get(target.url)).status_code for _ in range(3)]
        with pytest.raises(httpx.ReadTimeout):
            await client.get(target.url, timeout=0.2)
        codes += [(await client.get(target.url)).status_code for _ in range(2)]
    assert codes == [200, 200, 500, 200, 200]  # the last phase repeats
    assert target.served == ["ok", "ok", "error", "hang", "ok", "ok"]


async def test_run_flaky_target_yields_its_url(anyio_backend: str) -> None:
    async with run_flaky_target() as url, httpx.AsyncClient() as client:
        response = await client.get(url)
    assert (response.status_code, response.text) == (200, "ok")
    assert DEFAULT_PLAN[0][0] == "ok"


def test_a_bad_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="behaviour one of ok, error, hang"):
        FlakyTarget([("flaky", 1)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty plan"):
        FlakyTarget([])
