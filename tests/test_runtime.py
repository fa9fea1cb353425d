"""The runtime's operator actions: chaos goes through the service, every outcome is audited."""

import asyncio
import json

import httpx
import pytest

from monitor.actor import Actor
from monitor.config import Settings
from monitor.runtime import create_runtime
from tests import support

URLS = "v1=http://v1.test,v2=http://v2.test,v3=http://v3.test"
OLGA = Actor("olga", "operator", "127.0.0.1", "pytest", "req-7")


class ChaosEndpoint:
    """The services' chaos API at the HTTP edge; `audited` holds the audit actions that were
    already written when each call arrived."""

    def __init__(self):
        self.calls = []
        self.audited = []
        self.runtime = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.url.host, request.url.path, request.headers["authorization"]))
        if self.runtime is not None:
            self.audited.append([(r.action, r.outcome) for r in audit_rows(self.runtime)])
        body = json.loads(request.content or b"{}")
        if request.url.path == "/chaos/errors" and not 0 <= body.get("probability", 0) <= 1:
            return httpx.Response(422, json={"detail": [
                {"loc": ["body", "probability"], "msg": "must be at most 1"}]})
        fault = request.url.path.rsplit("/", 1)[1]
        faults = {} if fault == "reset" else {fault: body}
        return httpx.Response(200, json={"version": "v1", "faults": faults})


@pytest.fixture
def endpoint():
    return ChaosEndpoint()


@pytest.fixture
async def runtime(tmp_path, endpoint):
    settings = Settings(data_dir=tmp_path, services=URLS, _env_file=None)
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    runtime = create_runtime(settings, http_client=client)
    endpoint.runtime = runtime
    yield runtime
    await client.aclose()
    runtime.store.dispose()


def audit_rows(runtime):
    return support.audit_rows(runtime.store)


async def test_it_injects_chaos_with_the_token_and_shows_the_fault_at_once(runtime, endpoint):
    result = await runtime.chaos(OLGA, "v1", "errors", {"probability": 1.0})
    assert result.ok
    host, path, auth = endpoint.calls[0]
    assert (host, path, auth) == ("v1.test", "/chaos/errors",
                                  f"Bearer {runtime.keys.chaos_token}")
    assert runtime.status()["versions"][0]["faults"] == {"errors": {"probability": 1.0}}
    row = audit_rows(runtime)[-1]
    assert (row.action, row.actor, row.target, row.outcome, row.request_id) == (
        "chaos.errors", "olga", "v1", "ok", "req-7")

    await runtime.chaos(OLGA, "v1", "reset", {})
    assert runtime.status()["versions"][0]["faults"] == {}


async def test_it_audits_the_chaos_intent_before_injecting_and_the_outcome_after(runtime,
                                                                                 endpoint):
    await runtime.chaos(OLGA, "v2", "latency", {"ms": 100})
    assert endpoint.audited[0][-1] == ("chaos.intent", "requested")
    rows = audit_rows(runtime)[-2:]
    assert [(r.action, r.outcome, r.target) for r in rows] == [
        ("chaos.intent", "requested", "v2"), ("chaos.latency", "ok", "v2")]
    assert json.loads(rows[0].params) == {"ms": 100, "fault": "latency"}


async def test_it_keeps_background_audit_writes_until_they_are_done(runtime):
    runtime._on_child_event("v1", "restart", "exited with 1")
    assert len(runtime._tasks) == 1
    await asyncio.gather(*runtime._tasks)
    assert not runtime._tasks
    row = audit_rows(runtime)[-1]
    assert (row.action, row.target, row.reason) == ("supervisor.restart", "v1", "exited with 1")


async def test_it_passes_the_services_refusal_back_and_audits_it(runtime):
    result = await runtime.chaos(OLGA, "v1", "errors", {"probability": 7})
    assert not result.ok and "probability: must be at most 1" in result.message
    assert runtime.status()["versions"][0]["faults"] == {}
    row = audit_rows(runtime)[-1]
    assert (row.action, row.outcome) == ("chaos.errors", "refused")


@pytest.mark.parametrize("version, fault, reason", [
    ("v9", "crash", "unknown version"),
    ("v1", "meltdown", "unknown fault"),
])
async def test_it_refuses_unknown_targets_without_calling_a_service(runtime, endpoint, version,
                                                                    fault, reason):
    result = await runtime.chaos(OLGA, version, fault, {})
    assert not result.ok and reason in result.message
    assert endpoint.calls == []
    assert audit_rows(runtime)[-1].outcome == "refused"


async def test_it_routes_to_the_active_version_first(runtime):
    assert runtime.route_candidates()[0] == ("v1", "http://v1.test")


async def test_it_audits_manual_failover_with_the_operator_and_reason(runtime):
    refused = await runtime.failover(OLGA, "v2", reason="drill", force=False)
    assert not refused.ok and "not up" in refused.message
    forced = await runtime.failover(OLGA, "v2", reason="drill", force=True)
    assert forced.ok and runtime.status()["active"] == "v2"
    assert runtime.status()["epoch"] == 1
    rows = [r for r in audit_rows(runtime) if r.action == "failover.manual"]
    assert [(r.outcome, r.actor) for r in rows] == [("refused", "olga"), ("ok", "olga")]
    assert rows[-1].reason == "drill"
    assert json.loads(rows[-1].params)["forced"] is True


async def test_it_computes_uptime_over_24_hours_per_version(runtime):
    from monitor.storage.store import ProbeRow

    now = runtime.clock()
    with runtime.store.write() as session:
        for i in range(10):
            session.add(ProbeRow(version="v1", at=now - i, ok=i != 0))
            session.add(ProbeRow(version="v2", at=now - i, ok=i < 5))
        session.add(ProbeRow(version="v3", at=now - 90_000, ok=False))  # older than 24 h
    uptime = {v["name"]: v["uptime_24h"] for v in runtime.status()["versions"]}
    assert uptime == {"v1": 90.0, "v2": 50.0, "v3": None}


async def test_it_shows_a_service_the_supervisor_gave_up_on(runtime):
    class GaveUp:
        def status(self):
            return {"v1": {"pid": None, "running": False, "restarts": 5, "given_up": True,
                           "last_exit": "exited with code 1"}}

    runtime.supervisor = GaveUp()
    v1 = runtime.status()["versions"][0]
    assert v1["process"]["given_up"]
    assert "process left down after 5 restarts (exited with code 1)" in v1["reason"]
    assert runtime.status()["versions"][1]["process"] is None


async def test_it_routes_to_the_active_then_the_up_standbys_in_priority_order(runtime):
    from monitor.failover.model import Observation

    now = runtime.clock()
    for version, ok in (("v1", True), ("v2", False), ("v3", True)):
        for _ in range(3):
            await runtime.watchdog.observe(Observation(version, ok, now, failure=None if ok
                                                       else "refused"))
    assert [v for v, _ in runtime.route_candidates()] == ["v1", "v3"]


async def test_it_reports_and_audits_chaos_on_a_dead_service(tmp_path):
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    settings = Settings(data_dir=tmp_path, services=URLS, _env_file=None)
    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    runtime = create_runtime(settings, http_client=client)
    try:
        result = await runtime.chaos(OLGA, "v2", "hang", {})
        assert not result.ok and "unreachable" in result.message
        row = audit_rows(runtime)[-1]
        assert (row.action, row.target, row.outcome) == ("chaos.hang", "v2", "refused")
    finally:
        await client.aclose()
        runtime.store.dispose()
