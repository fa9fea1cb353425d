"""The desired state inside the monitor, without processes: the minReady gate, the URLs the
probes use, and spec revisions that change the set of versions (the policy is reshaped)."""

from __future__ import annotations

import httpx
import pytest

from monitor.actor import SYSTEM, Actor
from monitor.config import Settings
from monitor.desired import apply as applying
from monitor.desired.service import NO_REPLICA, LiveUrls
from monitor.failover.model import Failure
from monitor.failover.probe import ProbeResult
from monitor.runtime import create_runtime
from monitor.web.app import create_app
from tests import support

OLGA = Actor("olga", "operator", "127.0.0.1", "pytest", "req-1")
SPEC = """apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  minReady: 2
  versions:
VERSIONS
"""
LOCAL_V1 = "    - {name: v1, command: [python, -m, services.v1], replicas: 3}"


def spec(*versions: str) -> str:
    lines = [v if v.startswith(" ") else f"    - {{name: {v}, url: 'http://{v}.test'}}"
             for v in versions]
    return SPEC.replace("VERSIONS", "\n".join(lines))


class Replicas:
    """The controller as the desired service reads it: ports, and which are ready."""

    def __init__(self, ports: list[int], ready: list[int]) -> None:
        self.ports, self.ready = ports, ready

    def endpoints(self, version: str) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ready]

    def replicas(self, version: str) -> list[dict[str, object]]:
        return [{"port": p, "ready": p in self.ready} for p in self.ports]


@pytest.fixture
async def make_runtime(tmp_path):
    made = []

    def make(text: str):
        path = tmp_path / "spec.yaml"
        path.write_text(text)
        settings = Settings(data_dir=tmp_path / "data", spec=path, _env_file=None)
        client = httpx.AsyncClient(transport=httpx.MockTransport(
            lambda request: httpx.Response(503)))
        runtime = create_runtime(settings, http_client=client)
        made.append((runtime, client))
        return runtime
    yield make
    for runtime, client in made:
        await client.aclose()
        runtime.watchdog.close()
        runtime.store.dispose()


@pytest.mark.parametrize("ports, ready, outcome", [
    ([1, 2, 3], [1, 2, 3], None),
    ([1, 2, 3], [1, 2], None),
    ([1, 2, 3], [1], "1 of 3 replicas ready (minReady 2)"),
    ([1, 2, 3], [], "0 of 3 replicas ready (minReady 2)"),
    ([], [], "0 of 0 replicas ready (minReady 2)"),
])
async def test_it_fails_a_passing_probe_of_a_version_short_of_min_ready(
        make_runtime, ports, ready, outcome):
    runtime = make_runtime(spec(LOCAL_V1, "v2"))
    runtime.desired.controller = Replicas(ports, ready)
    passed = ProbeResult("v1", True, 100.0, 3.0, 200)
    seen = runtime.watchdog.replica_gate(passed)
    assert (seen.ok, seen.failure, seen.detail or None) == (
        (True, None, None) if outcome is None else (False, Failure.REPLICAS, outcome))
    failed = ProbeResult("v1", False, 100.0, None, None, Failure.REFUSED, "refused")
    assert runtime.watchdog.replica_gate(failed) == failed  # its own failure is kept
    external = ProbeResult("v2", True, 100.0, 3.0, 200)
    assert runtime.watchdog.replica_gate(external) == external  # not replicated here


@pytest.mark.parametrize("ports, ready, url", [
    ([1001, 1002], [1002], "http://127.0.0.1:1002"),  # the first ready replica
    ([1001, 1002], [], "http://127.0.0.1:1001"),  # none ready: the gate fails it anyway
    ([], [], NO_REPLICA),
])
async def test_it_probes_a_ready_replica_when_there_is_one(make_runtime, ports, ready, url):
    runtime = make_runtime(spec(LOCAL_V1, "v2"))
    runtime.desired.controller = Replicas(ports, ready)
    assert isinstance(runtime.urls, LiveUrls)
    assert runtime.urls["v1"] == url
    assert runtime.urls["v2"] == "http://v2.test"
    assert list(runtime.urls) == ["v1", "v2"]


def apply(runtime, text: str) -> None:
    applying.apply(runtime.store, runtime.keys.audit, text, who=SYSTEM, now=runtime.clock())


def reconciled(runtime):
    return [(r.outcome, r.reason) for r in support.audit_rows(runtime.store, "spec.reconcile")]


async def test_it_adds_and_removes_versions_of_a_new_revision_keeping_earned_health(
        make_runtime):
    runtime = make_runtime(spec("v1", "v2", "v3"))
    v2_health = runtime.watchdog.state.health_of("v2")
    apply(runtime, spec("v1", "v4", "v2"))
    await runtime.desired.sync()
    assert runtime.policy.versions == ("v1", "v4", "v2")
    assert runtime.watchdog.policy is runtime.policy is runtime.operations.policy
    assert runtime.reads.policy is runtime.policy
    assert runtime.scheduler.versions == ("v1", "v4", "v2")
    assert list(runtime.urls) == ["v1", "v4", "v2"] and runtime.urls["v4"] == "http://v4.test"
    assert [h.name for h in runtime.watchdog.state.health] == ["v1", "v4", "v2"]
    assert runtime.watchdog.state.health_of("v2") is v2_health
    assert [v["name"] for v in runtime.status()["versions"]] == ["v1", "v4", "v2"]
    assert reconciled(runtime) == [("ok", "the versions changed")]
    assert create_app(runtime).state.web.versions == ["v1", "v4", "v2"]  # forms accept v4


async def test_it_defers_a_revision_that_removes_the_active_version_until_a_failover(
        make_runtime):
    runtime = make_runtime(spec("v1", "v2", "v3"))
    apply(runtime, spec("v2", "v3"))
    await runtime.desired.sync()
    await runtime.desired.sync()
    assert runtime.policy.versions == ("v1", "v2", "v3")
    assert reconciled(runtime) == [("deferred", "the revision removes v1, the active version: "
                                                "fail over to one of v2, v3 first")]
    result = await runtime.failover(OLGA, "v2", reason="retire v1", force=True)
    assert result.ok, result.message
    await runtime.desired.sync()
    assert runtime.policy.versions == ("v2", "v3")
    assert runtime.watchdog.state.active == "v2"
    assert [o for o, _ in reconciled(runtime)] == ["deferred", "ok"]


async def test_it_follows_a_new_url_of_an_external_version(make_runtime):
    runtime = make_runtime(spec("v1", "v2"))
    apply(runtime, spec("v1", "v2").replace("http://v2.test", "http://v2-new.test"))
    await runtime.desired.sync()
    assert runtime.urls["v2"] == "http://v2-new.test"
    assert runtime.reads.route_candidates()[0][0] == "v1"
    assert [o for o, _ in reconciled(runtime)] == ["ok"]
