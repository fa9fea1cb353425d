"""A locked database never holds a decision up, and queued decisions survive a restart."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import contextmanager

import httpx
import pytest
from sqlmodel import select

from monitor.failover.backlog import Queued
from monitor.failover.watchdog import Watchdog
from monitor.notices import delivery
from monitor.ops.metrics import Metrics
from monitor.storage import audit
from monitor.storage.journal import Journal
from monitor.storage.store import AuditRow, Notice, ProbeRow, StaleEpoch, Store
from tests.failover.test_watchdog import CANARY, KEY, POLICY, URLS, Services, probe_all
from tests.support import FakeClock

PRODUCTION_BUSY_MS = 5000


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "m.db"
    store = Store(f"sqlite:///{path}", busy_timeout_ms=PRODUCTION_BUSY_MS)
    store.create_all()
    yield store, path
    store.dispose()


def watchdog(store, services, clock, journal, metrics=None):
    client = httpx.AsyncClient(transport=httpx.MockTransport(services.handler))
    dog = Watchdog(policy=POLICY, urls=URLS, store=store, audit_key=KEY, client=client,
                   clock=clock, canary=CANARY, timeout=1.0, enqueue=delivery.enqueue,
                   metrics=metrics, journal=journal)
    dog.load()
    return dog


@contextmanager
def write_locked(path):
    """Another process holds SQLite's write lock (as a long backup or a CLI would)."""
    blocker = sqlite3.connect(path, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


def actions(store) -> list[str]:
    with store.read() as session:
        return [r.action for r in session.exec(select(AuditRow).order_by(AuditRow.seq))]


async def test_it_fails_over_without_waiting_out_the_production_busy_timeout(db, tmp_path):
    """15 probes with a 5 s busy timeout would take 75 s if each waited for the lock."""
    store, path = db
    clock, services = FakeClock(1000.0), Services()
    metrics = Metrics()
    dog = watchdog(store, services, clock, Journal(tmp_path / "j"), metrics)
    await probe_all(dog, clock, rounds=2)
    services.down.add("v1")
    with write_locked(path):
        await asyncio.wait_for(probe_all(dog, clock, rounds=3),
                               timeout=PRODUCTION_BUSY_MS / 1000 * 0.8)
        assert dog.state.active == "v2"
        assert metrics.queued_writes > 0 and len(dog.journal) == metrics.queued_writes
    assert await dog.flush() == 0
    assert metrics.queued_writes == 0 and len(dog.journal) == 0
    assert actions(store).count("failover.automatic") == 1


async def test_it_replays_journaled_decisions_after_a_restart(db, tmp_path):
    store, path = db
    clock, services = FakeClock(1000.0), Services()
    journal_path = tmp_path / "decisions.journal"
    dog = watchdog(store, services, clock, Journal(journal_path))
    await probe_all(dog, clock, rounds=2)
    services.down.add("v1")
    with write_locked(path):
        await probe_all(dog, clock, rounds=3)
        assert dog.state.active == "v2" and store.load_state()["active"] == "v1"
        unwritten = len(dog.batch)  # plain probe rows of the last second die with the process
        dog.close()  # the process dies here (OOM kill): memory is gone, the journal is not
        assert len(Journal(journal_path)) > 0
        # a restart while the database still refuses writes resumes the journaled decision
        while_locked = watchdog(store, services, clock, Journal(journal_path))
        assert while_locked.state.active == "v2" and while_locked.state.epoch == 1
        while_locked.close()
    restarted = watchdog(store, services, clock, Journal(journal_path))
    assert restarted.state.active == "v2"
    assert store.load_state()["active"] == "v2" and store.load_state()["epoch"] == 1
    assert actions(store).count("failover.automatic") == 1
    with store.read() as session:
        assert [n.kind for n in session.exec(select(Notice))].count("failover") == 1
        assert len(list(session.exec(select(ProbeRow)))) == 5 * 3 - unwritten
    assert len(Journal(journal_path)) == 0
    assert audit.verify(store, KEY).ok


async def test_it_drops_only_the_stale_job_and_writes_the_ones_behind_it(db, tmp_path):
    store, path = db
    clock, services = FakeClock(1000.0), Services()
    dog = watchdog(store, services, clock, Journal(tmp_path / "j"))
    await probe_all(dog, clock, rounds=1)
    written: list[str] = []

    def stale() -> None:
        raise StaleEpoch("epoch is no longer 0")

    def fine(name: str) -> None:
        with store.write() as session:
            audit.append(session, KEY, now=clock(), action=f"test.{name}")
        written.append(name)

    dog._backlog.items = [Queued(lambda: fine("before"), False), Queued(stale, False),
                          Queued(lambda: fine("after"), False)]
    assert await dog.flush() == 0
    assert written == ["before", "after"]
