"""The watchdog folds probes into the engine and writes every decision in one transaction."""

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest
from sqlmodel import select

from monitor.failover.canary import Canary, book_digest
from monitor.failover.model import Failure, Policy
from monitor.failover.watchdog import Watchdog
from monitor.notices import delivery
from monitor.storage import audit
from monitor.storage.store import AuditRow, Incident, Notice, ProbeRow, Store
from tests.support import FakeClock

KEY = b"k" * 32
BOOK = {"id": "b1", "title": "Moby-Dick", "authors": ["Herman Melville"]}
CANARY = Canary(query="Moby-Dick", book_id="b1", digest=book_digest(BOOK))
URLS = {v: f"http://{v}.test" for v in ("v1", "v2", "v3")}
POLICY = Policy(fall=3, rise=2, cooldown=15, startup_grace=0)


class Services:
    """Fake book services at the HTTP edge: each version is healthy unless told otherwise."""

    def __init__(self):
        self.down: set[str] = set()

    def handler(self, request: httpx.Request) -> httpx.Response:
        version = request.url.host.split(".")[0]
        if version in self.down:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok", "faults": {}})
        return httpx.Response(200, json={"total": 1, "items": [BOOK]})


@pytest.fixture
def services():
    return Services()


def make_watchdog(store, services, clock):
    client = httpx.AsyncClient(transport=httpx.MockTransport(services.handler))
    dog = Watchdog(policy=POLICY, urls=URLS, store=store, audit_key=KEY, client=client,
                   clock=clock, canary=CANARY, timeout=1.0, enqueue=delivery.enqueue)
    dog.load()
    return dog


@contextmanager
def locked_database(dog, tmp_path):
    """Another connection holds the write lock; the watchdog's store gives up after 50 ms.
    After the block the lock is released and the watchdog keeps that (now usable) store."""
    blocker = sqlite3.connect(tmp_path / "m.db", timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    dog.store = Store(f"sqlite:///{tmp_path}/m.db", busy_timeout_ms=50)
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


async def probe_all(dog, clock, rounds=1):
    for _ in range(rounds):
        for version in URLS:
            await dog.cycle(version)
        clock.advance(1)
    # confirming probes requested by the engine
    for version in sorted(dog.hurry):
        await dog.cycle(version)


def rows(store, model):
    with store.read() as session:
        return list(session.exec(select(model)))


async def crash_v1(store, services, clock):
    """Warm every version up, then let v1 refuse connections for three rounds."""
    dog = make_watchdog(store, services, clock)
    await probe_all(dog, clock, rounds=2)
    services.down.add("v1")
    await probe_all(dog, clock, rounds=3)
    return dog


async def test_it_persists_a_failover_with_its_evidence_audit_row_and_notice(store, services):
    clock = FakeClock(1000.0)
    dog = await crash_v1(store, services, clock)
    assert (dog.state.active, dog.state.epoch) == ("v2", 1)
    assert store.load_state()["active"] == "v2" and store.load_state()["epoch"] == 1
    switch = [r for r in rows(store, AuditRow) if r.action == "failover.automatic"]
    assert len(switch) == 1 and switch[0].target == "v2"
    evidence = json.loads(switch[0].evidence)
    assert {e["version"] for e in evidence} == {"v1", "v2"}
    assert any(e["failure"] == "refused" for e in evidence)
    notices = [n for n in rows(store, Notice) if n.kind == "failover"]
    assert len(notices) == 1 and "v1 -> v2" in notices[0].subject
    await dog.flush_probes()
    assert len(rows(store, ProbeRow)) >= 15


async def test_it_writes_probes_that_decide_nothing_in_one_batch(store, services):
    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    await probe_all(dog, clock, rounds=2)  # the first results are decisions (state changes)
    await dog.flush_probes()
    written = len(rows(store, ProbeRow))
    await probe_all(dog, clock, rounds=3)  # healthy: nothing to decide, nothing written yet
    assert len(rows(store, ProbeRow)) == written and len(dog.batch) == 3 * 3
    await dog.flush_probes()
    assert len(rows(store, ProbeRow)) == written + 3 * 3 and dog.batch == []


async def test_it_writes_the_waiting_probe_rows_with_the_next_decision(store, services):
    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    cycles, cycle = [], dog.cycle

    async def counted(version):
        cycles.append(version)
        return await cycle(version)

    dog.cycle = counted
    await probe_all(dog, clock, rounds=3)
    await dog.flush_probes()
    services.down.add("v1")
    await probe_all(dog, clock, rounds=4)
    assert dog.state.active == "v2" and dog.state.last_switch_at is not None
    assert len(rows(store, ProbeRow)) + len(dog.batch) == len(cycles)  # none lost
    assert all(r.at >= dog.state.last_switch_at for r in dog.batch)  # only later ones wait


async def test_it_resumes_the_same_active_and_epoch_after_a_restart(store, services):
    clock = FakeClock(1000.0)
    dog = await crash_v1(store, services, clock)
    assert dog.state.active == "v2"

    restarted = make_watchdog(store, services, clock)
    assert (restarted.state.active, restarted.state.epoch) == ("v2", 1)
    services.down.clear()
    await probe_all(restarted, clock, rounds=3)
    assert (restarted.state.active, restarted.state.epoch) == ("v2", 1)
    assert len([r for r in rows(store, AuditRow) if r.action == "failover.automatic"]) == 1


async def test_it_opens_one_incident_when_all_versions_are_down(store, services):
    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    await probe_all(dog, clock, rounds=2)
    services.down.update(URLS)
    await probe_all(dog, clock, rounds=6)
    incidents = rows(store, Incident)
    assert len(incidents) == 1 and incidents[0].closed_at is None
    assert dog.state.active == "v1"
    services.down.clear()
    await probe_all(dog, clock, rounds=3)
    assert rows(store, Incident)[0].closed_at is not None
    kinds = [n.kind for n in rows(store, Notice)]
    assert kinds.count("all_down") == 1 and kinds.count("recovery") == 1


async def test_it_keeps_failing_over_while_the_database_is_locked_and_loses_no_row(
        store, services, tmp_path):
    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    await probe_all(dog, clock, rounds=2)
    services.down.add("v1")
    with locked_database(dog, tmp_path):
        await probe_all(dog, clock, rounds=3)
        assert dog.state.active == "v2"  # the decision took effect although nothing was written
        assert store.load_state()["active"] == "v1"
    assert await dog.flush() == 0
    assert store.load_state() == {**store.load_state(), "active": "v2", "epoch": 1}
    assert [r.action for r in rows(store, AuditRow)].count("failover.automatic") == 1
    assert [n.kind for n in rows(store, Notice)].count("failover") == 1
    assert len(rows(store, ProbeRow)) == 5 * 3  # every probe of the five rounds
    assert audit.verify(store, KEY).ok


async def test_it_audits_a_refused_manual_action_and_changes_nothing(store, services):
    from monitor.actor import Actor
    from monitor.failover import engine

    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    actor = Actor("olga", "operator", "127.0.0.1", "pytest", "req-1")
    ok, message = await dog.act(
        lambda state, now: engine.manual_failover(state, "v3", POLICY, now, reason="drill",
                                                  actor="olga"),
        actor=actor, action="failover.manual", target="v3", reason="drill")
    assert not ok and "not up" in message
    row = rows(store, AuditRow)[-1]
    assert (row.action, row.outcome, row.actor, row.request_id) == (
        "failover.manual", "refused", "olga", "req-1")
    assert dog.state.active == "v1" and store.load_state()["epoch"] == 0


async def test_it_keeps_memory_and_database_in_step_when_cancelled_mid_write(store, services):
    import asyncio
    import threading

    from monitor.actor import Actor
    from monitor.failover import engine

    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    real_write = dog._write
    writing, release = threading.Event(), threading.Event()

    def held_write(*args):
        writing.set()
        release.wait(timeout=10)  # the commit is still running when shutdown cancels the caller
        real_write(*args)

    dog._write = held_write
    task = asyncio.create_task(dog.act(
        lambda state, now: engine.pause(state, now, reason="maintenance", actor="olga"),
        actor=Actor("olga", "operator"), action="failover.pause"))
    assert await asyncio.to_thread(writing.wait, 10)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.load_state()["paused"] is True
    assert dog.state.paused is True


def test_it_probes_a_version_at_once_on_gateway_failures_but_never_fails_over(store, services):
    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    hurried = []
    dog.on_hurry = hurried.append
    for _ in range(10):
        dog.report_passive("v1", "refused")  # a burst: one probe, not ten
    dog.report_passive("v9", "refused")      # unknown versions are ignored
    assert hurried == ["v1"]
    clock.advance(POLICY.fast_interval)
    dog.report_passive("v1", "timeout")
    assert hurried == ["v1", "v1"]
    assert (dog.state.active, dog.state.epoch) == ("v1", 0)


async def test_it_drops_plain_probe_rows_first_when_the_queue_is_full(store, services, tmp_path,
                                                                     monkeypatch):
    from monitor.failover import backlog

    monkeypatch.setattr(backlog, "MAX_BACKLOG", 4)
    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    await probe_all(dog, clock, rounds=2)
    services.down.add("v1")
    with locked_database(dog, tmp_path):
        for _ in range(4):
            await probe_all(dog, clock)
            await dog.flush_probes()  # each batch of plain probe rows is a droppable write
    assert await dog.flush() == 0
    assert len(rows(store, ProbeRow)) < 6 * 3  # some plain probe rows were given up
    actions = [r.action for r in rows(store, AuditRow)]
    assert actions.count("failover.automatic") == 1 and "version.state" in actions
    assert store.load_state()["active"] == "v2"
    assert audit.verify(store, KEY).ok


async def test_it_fails_over_when_a_version_has_fewer_ready_replicas_than_min_ready(store,
                                                                                    services):
    """minReady is the watchdog's observation: v1 answers its probes well, but the gate
    (the desired state's count of ready replicas) says it is short, so v1 goes DOWN."""
    clock = FakeClock()
    dog = make_watchdog(store, services, clock)
    await probe_all(dog, clock, rounds=2)
    short = {"v1"}

    def gate(result):
        if result.ok and result.version in short:
            return replace(result, ok=False, failure=Failure.REPLICAS,
                           detail="1 of 3 replicas ready (minReady 2)")
        return result

    dog.replica_gate = gate
    await probe_all(dog, clock, rounds=3)
    assert dog.state.active == "v2"
    assert dog.last["v1"].failure == Failure.REPLICAS
    failed = [r for r in rows(store, ProbeRow) if r.version == "v1" and not r.ok]
    assert failed and all(r.failure == "replicas" for r in failed)
    (switch,) = [r for r in rows(store, AuditRow) if r.action == "failover.automatic"]
    assert "minReady 2" in switch.evidence


async def test_it_keeps_probing_while_the_probe_rows_are_written(store, services):
    """flush_probes holds the lock only to queue its write: a probe decided while the write
    runs is batched at once, and no row is lost."""
    import asyncio
    import threading

    clock = FakeClock(1000.0)
    dog = make_watchdog(store, services, clock)
    await probe_all(dog, clock, rounds=2)
    await dog.flush_probes()
    real_write = dog._write
    writing, release = threading.Event(), threading.Event()

    def held_write(*args, **kwargs):
        writing.set()
        release.wait(timeout=10)
        real_write(*args, **kwargs)

    dog._write = held_write
    await dog.cycle("v2")
    flush = asyncio.create_task(dog.flush_probes())
    assert await asyncio.to_thread(writing.wait, 10)
    await asyncio.wait_for(dog.cycle("v3"), timeout=5)  # not held up by the running write
    assert [r.version for r in dog.batch] == ["v3"]
    release.set()
    await flush
    dog._write = real_write
    await dog.flush()
    assert len(rows(store, ProbeRow)) == 2 * 3 + 2
