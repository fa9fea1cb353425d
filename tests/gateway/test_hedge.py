"""Hedged requests through the gateway: who answers, and no backend tried twice."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.gateway.test_gateway import warmed


def after(seconds: float, status: int):
    async def answer(request):
        await asyncio.sleep(seconds)
        return httpx.Response(status, json={})

    return answer


@pytest.mark.parametrize("v1, v2, served_by, tried, reports", [
    # the first answers after the hedge left but before it returns: the first is used
    (after(0.2, 200), after(2.0, 200), "v1", ["v1", "v2"], []),
    # both fail: the next retry goes to v3, and neither v1 nor v2 is tried again
    (after(0.2, 503), after(0.3, 503), "v3", ["v1", "v2", "v3"],
     [("v1", "http_5xx"), ("v2", "http_5xx")]),
    # the hedge fails first, then the first answers: the first is used, the hedge reported
    (after(0.3, 200), after(0.1, 503), "v1", ["v1", "v2"], [("v2", "http_5xx")]),
])
async def test_it_uses_the_right_answer_of_a_hedged_request(v1, v2, served_by, tried, reports):
    behaviour: dict[str, object] = {"v1": 200}
    async with warmed(behaviour, hedge=True, attempt_floor=4.0) as (client, seen, router):
        behaviour.update(v1=v1, v2=v2)
        response = await client.get("/books")
    assert (response.status_code, response.headers["x-served-by"]) == (200, served_by)
    assert [r.url.host.split(".")[0] for r in seen] == tried
    assert router.reports == reports


async def test_it_ends_a_hedged_request_when_the_gateway_cancels_it():
    behaviour: dict[str, object] = {"v1": 200}
    async with warmed(behaviour, hedge=True, attempt_floor=4.0) as (client, seen, _):
        behaviour.update(v1=after(30, 200), v2=after(30, 200))
        request = asyncio.create_task(client.get("/books"))
        for _ in range(300):  # until both attempts are out (bounded: 3 s)
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    assert len(seen) == 2
