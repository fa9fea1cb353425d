"""Two monitors on one PostgreSQL: only the leader acts; a follower queues operator actions."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import select

from monitor.config import Settings
from monitor.runtime import Actor, Runtime, create_runtime
from monitor.storage import commands
from monitor.storage.lease import Fenced
from monitor.storage.store import AuditRow, ProbeRow
from tests.storage.postgres import migrated_database

URLS = "v1=http://v1.test,v2=http://v2.test,v3=http://v3.test"
SECRET = "k3y-for-two-monitors-QZ81vX7mN2pL4rT6"
OLGA = Actor("olga", "operator", "10.0.0.7", "firefox", "req-1")


def chaos_endpoint(calls: list[str]):
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        return httpx.Response(200, json={"faults": {"latency": {"ms": 5}}})
    return handle


@pytest.fixture
async def pair(pg_cluster, tmp_path):
    """Monitor `a` and monitor `b` on one database, lease TTL 30 s (a lease runs out only
    when a test says so, however loaded the machine); neither has started."""
    url = pg_cluster.url(migrated_database(pg_cluster))
    calls: list[str] = []
    made = []
    for name, port in (("a", 18001), ("b", 18002)):
        settings = Settings(data_dir=tmp_path / name, services=URLS, database_url=url,
                            port=port, gateway_port=port + 100, secret_key=SECRET,
                            lease_ttl=30.0, _env_file=None)
        client = httpx.AsyncClient(transport=httpx.MockTransport(chaos_endpoint(calls)))
        made.append((create_runtime(settings, http_client=client), client))
    yield made[0][0], made[1][0], calls
    for runtime, client in made:
        await client.aclose()
        runtime.watchdog.close()
        runtime.store.dispose()


async def elect(runtime: Runtime, timeout: float = 20.0) -> None:
    lease = runtime.leadership.lease
    assert lease is not None
    deadline = time.monotonic() + timeout
    while not runtime.leadership.is_leader:
        assert time.monotonic() < deadline, "never elected"
        await runtime.leadership.step(lease, time.monotonic())


def run_out(runtime: Runtime) -> None:
    """The lease of `runtime` expires now, in the database (it stopped renewing long ago)."""
    with runtime.store.write() as session:
        session.execute(text("UPDATE monitor_lease SET expires_at = clock_timestamp()"))


def rows(runtime: Runtime, action_prefix: str = "") -> list[AuditRow]:
    with runtime.store.read() as session:
        found = session.exec(select(AuditRow).order_by(AuditRow.seq))
        return [r for r in found if r.action.startswith(action_prefix)]


async def test_it_queues_a_follower_action_and_the_leader_applies_it_once_as_the_operator(pair):
    a, b, _ = pair
    await elect(a)
    await b.leadership.step(b.leadership.lease, time.monotonic())
    assert not b.leadership.is_leader

    queued = await b.pause(OLGA, reason="maintenance")
    assert queued.ok and "queued" in queued.message and rows(a, "failover.pause") == []

    assert await a.duties.apply_commands() == 1
    assert await a.duties.apply_commands() == 0
    [row] = rows(a, "failover.pause")
    assert (row.actor, row.role, row.source_ip, row.user_agent, row.request_id) == (
        "olga", "operator", "10.0.0.7", "firefox", f"cmd-{queued.data['command']}")
    assert a.watchdog.state.paused
    await b.duties.follow()
    assert b.status()["paused"] is True
    assert b.status()["leader"] == {**a.leadership.view(), "self": False}
    assert a.status()["leader"]["self"] is True


async def test_it_applies_a_command_once_across_a_leader_change(pair):
    a, b, calls = pair
    await elect(a)
    queued = await b.chaos(OLGA, "v2", "latency", {"ms": 5})
    [command] = commands.pending(a.store)
    await a.duties._apply(command)  # applied, then `a` dies before closing the command
    assert calls == ["v2.test"]
    a.leadership.valid_until = None  # `a` is gone (no release): its lease runs out
    run_out(a)

    await elect(b)
    assert await b.duties.apply_commands() == 1
    assert calls == ["v2.test"]  # not injected twice
    assert len(rows(b, "chaos.latency")) == 1
    assert commands.get(b.store, queued.data["command"]).status == "done"


async def test_it_writes_nothing_once_another_monitor_leads(pair):
    a, b, calls = pair
    await elect(a)
    epoch, before = a.watchdog.state.epoch, len(rows(a))
    a_term = a.leadership.term
    run_out(a)  # a's lease ran out while a was paused
    await elect(b)
    a.leadership.term, a.leadership.valid_until = a_term, time.monotonic() + 60  # a resumes

    ok, _ = await a.watchdog.act(lambda state, now: (state, []), actor=OLGA,
                                 action="failover.pause")
    assert not ok
    result = await a.failover(OLGA, "v2", reason="by hand")
    assert not result.ok
    assert not (await a.chaos(OLGA, "v1", "crash", {})).ok
    with pytest.raises(Fenced):
        a.recorder.record(OLGA, "chaos.crash", target="v1")
    assert [r.action for r in rows(a)[before:]] == ["lease.lost", "lease.acquired"]
    assert b.store.load_state()["epoch"] == epoch and calls == []


async def test_it_always_leads_alone_on_sqlite(tmp_path):
    settings = Settings(data_dir=tmp_path, services=URLS, _env_file=None)
    runtime = create_runtime(settings)
    try:
        assert runtime.leadership.is_leader and not runtime.leadership.shared
        assert runtime.status()["leader"] is None
        assert (await runtime.pause(OLGA, reason="x")).ok and runtime.watchdog.state.paused
    finally:
        await runtime.client.aclose()
        runtime.watchdog.close()
        runtime.store.dispose()


async def test_it_shows_the_leaders_probes_on_the_follower(pair):
    a, b, _ = pair
    await elect(a)
    now = time.time()
    with a.store.write(fenced=True) as session:  # what the leader's probes stored
        for step in range(3):
            session.add(ProbeRow(version="v1", at=now - 1 + step * 0.1, ok=True))
            session.add(ProbeRow(version="v2", at=now - 1 + step * 0.1, ok=False,
                                 failure="refused"))
    await b.duties.follow()
    states = {v["name"]: v["state"] for v in b.status()["versions"]}
    assert states == {"v1": "up", "v2": "down", "v3": "unknown"}


class Replicas:
    """A replica controller as the desired-state service holds it: only `stop` is used."""

    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


async def test_it_stops_a_followers_replicas_only_once_another_monitor_leads(pair):
    a, b, _ = pair
    b.desired.controller = replicas = Replicas()
    await b.duties.follow()  # nobody leads yet: b may be about to lead, its replicas stay
    assert b.desired.controller is replicas and not replicas.stopped
    await elect(a)
    await b.duties.follow()
    assert b.desired.controller is None and replicas.stopped
    assert len(rows(b, "replicas.release")) == 1  # audited


async def test_it_does_not_probe_while_its_replicas_warm_up_after_an_election(pair):
    a, _, calls = pair
    await elect(a)
    a.desired.warming = True
    assert await a.duties.probe("v1") == a.policy.interval
    assert calls == []  # nothing was asked of v1
    a.desired.warming = False
    await a.duties.probe("v1")
    assert calls == ["v1.test"]
