"""A probe is readiness: /health must say OK and the canary book must be intact. Errors are data."""

import httpx
import pytest
import respx

from monitor.failover.canary import Canary, book_digest
from monitor.failover.probe import probe

BASE = "http://svc.test"
BOOK = {"id": "b1", "title": "Moby-Dick", "authors": ["Herman Melville"], "year": 1851}
CANARY = Canary(query="Moby-Dick", book_id="b1", digest=book_digest(BOOK))
HEALTHY = {"status": "ok", "version": "v1", "faults": {}}


def books(*items):
    return httpx.Response(200, json={"total": len(items), "items": list(items)})


def ticking(step):
    """A fake perf counter that advances `step` seconds per call."""
    state = {"t": 0.0}

    def perf():
        state["t"] += step
        return state["t"]
    return perf


async def run_probe(health, canary_answer, *, slow_ms=0.0, perf=None):
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(f"{BASE}/health")
        route.side_effect = health if isinstance(health, Exception) else None
        if not isinstance(health, Exception):
            route.return_value = health
        canary = mock.get(f"{BASE}/books")
        if isinstance(canary_answer, Exception):
            canary.side_effect = canary_answer
        else:
            canary.return_value = canary_answer
        async with httpx.AsyncClient() as client:
            kwargs = {"perf": perf} if perf else {}
            return await probe(client, "v1", BASE, now=100.0, timeout=1.0, canary=CANARY,
                               slow_ms=slow_ms, **kwargs)


@pytest.mark.parametrize("health, canary_answer, failure", [
    (httpx.Response(200, json=HEALTHY), books(BOOK), None),
    (httpx.ConnectError("refused"), books(BOOK), "refused"),
    (httpx.ReadTimeout("slow"), books(BOOK), "timeout"),
    (httpx.Response(503, json={"status": "fail"}), books(BOOK), "http_5xx"),
    (httpx.Response(200, text="<html>hi</html>"), books(BOOK), "bad_body"),
    (httpx.Response(200, json={"status": "starting"}), books(BOOK), "bad_body"),
    (httpx.Response(200, json=HEALTHY), httpx.Response(500, text="boom"), "http_5xx"),
    (httpx.Response(200, json=HEALTHY), httpx.Response(200, json={"nope": 1}), "bad_body"),
    (httpx.Response(200, json=HEALTHY), books({**BOOK, "title": "M0by-Dick"}), "corrupt"),
    (httpx.Response(200, json=HEALTHY), books({**BOOK, "id": "b2"}), "corrupt"),
    (httpx.Response(200, json=HEALTHY), books(), "corrupt"),
    (httpx.Response(200, json=HEALTHY), httpx.ConnectTimeout("late"), "timeout"),
])
async def test_it_classifies_every_outcome_as_data(health, canary_answer, failure):
    result = await run_probe(health, canary_answer)
    assert result.failure == failure
    assert result.ok is (failure is None)
    assert result.version == "v1" and result.at == 100.0


async def test_it_catches_a_health_endpoint_that_lies_about_a_corrupt_catalog():
    result = await run_probe(httpx.Response(200, json={**HEALTHY, "faults": {"corrupt": {}}}),
                             books({**BOOK, "year": 1900}))
    assert (result.ok, result.failure) == (False, "corrupt")
    assert result.faults == {"corrupt": {}}
    assert "differs" in result.detail


async def test_it_marks_a_probe_slower_than_slow_ms_as_failed():
    slow = await run_probe(httpx.Response(200, json=HEALTHY), books(BOOK), slow_ms=50,
                           perf=ticking(0.1))
    assert (slow.ok, slow.failure) == (False, "slow")
    fast = await run_probe(httpx.Response(200, json=HEALTHY), books(BOOK), slow_ms=500,
                           perf=ticking(0.1))
    assert fast.ok and fast.latency_ms == pytest.approx(100.0)


async def test_it_turns_a_probe_into_an_engine_observation():
    result = await run_probe(httpx.Response(503, json={}), books(BOOK))
    seen = result.observation()
    assert (seen.version, seen.ok, seen.failure, seen.status) == ("v1", False, "http_5xx", 503)


@pytest.mark.parametrize("canary_answer", [
    httpx.Response(200, text='{"items": [{"id": "b1", "title": "\\ud800"}]}'),  # no digest
    httpx.Response(200, text="[" * 100_000 + "]" * 100_000),  # nesting too deep for json
])
async def test_it_turns_an_answer_it_cannot_digest_into_bad_body(canary_answer):
    result = await run_probe(httpx.Response(200, json=HEALTHY), canary_answer)
    assert (result.ok, result.failure) == (False, "bad_body")
