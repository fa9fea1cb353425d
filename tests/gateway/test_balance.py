"""Spreading requests over a version's replicas: the pure order, then the gateway choosing."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from monitor.gateway.balance import Balance, order
from tests.gateway.test_gateway import URLS, FakeRouter, gateway_client

A, B, C = "http://a:1", "http://b:1", "http://c:1"
V2 = "http://v2:1"


@pytest.mark.parametrize("balance, backends, outstanding, ordered", [
    # round-robin keeps the route's rotation whatever is in flight
    (Balance.ROUND_ROBIN, [("v1", A), ("v1", B), ("v2", V2)], {A: 5}, [A, B, V2]),
    # least-outstanding: fewest in flight first, within the version only
    (Balance.LEAST_OUTSTANDING, [("v1", A), ("v1", B), ("v2", V2)], {A: 5}, [B, A, V2]),
    (Balance.LEAST_OUTSTANDING, [("v1", A), ("v1", B), ("v1", C)], {A: 2, B: 1}, [C, B, A]),
    # ties keep the rotation, so idle replicas still take turns
    (Balance.LEAST_OUTSTANDING, [("v1", B), ("v1", A), ("v1", C)], {}, [B, A, C]),
    (Balance.LEAST_OUTSTANDING, [("v1", B), ("v1", A)], {A: 1, B: 1}, [B, A]),
    # never across versions: an idle fallback does not jump ahead of a busy active version
    (Balance.LEAST_OUTSTANDING, [("v1", A), ("v2", V2)], {A: 9}, [A, V2]),
    (Balance.LEAST_OUTSTANDING, [("v2", V2), ("v1", A), ("v1", B)], {A: 1}, [V2, B, A]),
    (Balance.LEAST_OUTSTANDING, [], {}, []),
])
def test_it_orders_replicas_by_the_balance_rule(balance, backends, outstanding, ordered):
    assert [url for _, url in order(backends, balance, outstanding)] == ordered


class TwoReplicas(FakeRouter):
    """v1 on two replicas, always listed in the same order (no rotation), then v2."""

    def route_candidates(self):
        return [("v1", "http://v1.test:8001"), ("v1", "http://v1.test:8011"), ("v2", URLS["v2"])]


@pytest.mark.parametrize("balance, ports", [
    (Balance.LEAST_OUTSTANDING, [8001, 8011]),  # 8001 is busy: the second request avoids it
    (Balance.ROUND_ROBIN, [8001, 8001]),  # the route's order decides, busy or not
])
async def test_it_sends_a_request_to_the_replica_with_fewer_in_flight(balance, ports):
    release = asyncio.Event()

    async def answer(request):
        if len(seen) == 1:  # the first request stays in flight until released
            await release.wait()
        return httpx.Response(200, json={"port": request.url.port})

    client, seen = gateway_client(TwoReplicas(), {"v1": answer}, balance=balance)
    async with client:
        first = asyncio.create_task(client.get("/books"))
        for _ in range(200):  # until the first request is at its backend (bounded: 2 s)
            if seen:
                break
            await asyncio.sleep(0.01)
        second = await client.get("/books")
        release.set()
        assert (await first).status_code == second.status_code == 200
    assert [r.url.port for r in seen] == ports
