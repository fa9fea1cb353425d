"""The leader lease: one holder at a time, terms, renew deadline, fencing, handover."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import text
from sqlmodel import select

from monitor.storage import audit
from monitor.storage.lease import RENEW_DEADLINE, Fenced, Leadership, Lease, acting
from monitor.storage.store import AuditRow, ProbeRow, Store
from tests.storage.postgres import migrated_database

KEY = b"k" * 32


@pytest.fixture
def pg(pg_cluster):
    store = Store(pg_cluster.url(migrated_database(pg_cluster)))
    yield store
    store.dispose()


def make_lease(store: Store, holder: str, ttl: float = 5.0) -> Lease:
    lease = Lease(store, holder, ttl=ttl, audit_key=KEY)
    lease.ensure_row()
    return lease


def actions(store: Store) -> list[tuple[str, str, str]]:
    with store.read() as session:
        rows = session.exec(select(AuditRow).order_by(AuditRow.seq))
        return [(r.action, r.target, r.params) for r in rows]


def wait_for_acquire(lease: Lease, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        term = lease.acquire()
        if term is not None:
            return term
        time.sleep(0.05)
    raise AssertionError(f"{lease.holder} never acquired the lease")


@pytest.mark.parametrize("valid_until, now, leads", [
    (None, 0.0, False),      # never elected
    (10.0, 9.99, True),      # before the renew deadline
    (10.0, 10.0, False),     # at it: stop acting
    (10.0, 50.0, False),     # paused for a long time
])
def test_it_acts_only_before_the_renew_deadline(valid_until, now, leads):
    assert acting(valid_until, now) is leads


def test_it_stops_acting_before_the_ttl_ends():
    clock = [100.0]
    leadership = Leadership(None, ttl=6.0, renew=2.0, monotonic=lambda: clock[0])
    leadership.lease = object()  # type: ignore[assignment] - only the local deadline is used
    leadership.term, leadership.valid_until = 1, 100.0 + leadership.deadline
    assert leadership.deadline == pytest.approx(6.0 * RENEW_DEADLINE) and leadership.deadline < 6
    clock[0] = 100.0 + leadership.deadline - 0.01
    assert leadership.is_leader
    clock[0] = 100.0 + leadership.deadline
    assert not leadership.is_leader


def test_it_always_leads_alone_on_sqlite(sqlite_store):
    leadership = Leadership.single()
    sqlite_store.fence = leadership.fence
    with sqlite_store.write(fenced=True) as session:
        session.add(ProbeRow(version="v1", at=1.0, ok=True))
    assert leadership.is_leader and leadership.view() is None


def test_it_gives_the_lease_to_one_monitor_at_a_time(pg):
    a, b = make_lease(pg, "a"), make_lease(pg, "b")
    assert a.acquire() == 1
    assert b.acquire() is None
    assert a.renew(1) and not b.renew(1)
    seen = a.read()
    assert seen is not None and (seen.holder, seen.term) == ("a", 1)
    assert [x[:2] for x in actions(pg)] == [("lease.acquired", "a")]


def test_it_lets_a_follower_take_an_expired_lease_at_a_higher_term_and_audits_the_loss(pg):
    a, b = make_lease(pg, "a", ttl=1.0), make_lease(pg, "b", ttl=1.0)
    assert a.acquire() == 1
    assert wait_for_acquire(b) == 2
    assert not a.renew(1)  # the old leader cannot come back at its term
    assert [x[:2] for x in actions(pg)] == [
        ("lease.acquired", "a"), ("lease.lost", "a"), ("lease.acquired", "b")]
    assert '"how": "takeover"' in actions(pg)[-1][2]
    assert audit.verify(pg, KEY).ok


def test_it_hands_the_lease_over_at_once_on_release(pg):
    a, b = make_lease(pg, "a", ttl=60.0), make_lease(pg, "b", ttl=60.0)
    assert a.acquire() == 1
    assert a.release(1)
    assert b.acquire() == 2  # no waiting for the 60 s TTL
    assert [x[:2] for x in actions(pg)] == [
        ("lease.acquired", "a"), ("lease.released", "a"), ("lease.acquired", "b")]
    assert '"how": "handover"' in actions(pg)[-1][2]


async def test_it_fences_every_acting_write_of_a_monitor_that_lost_the_lease(pg):
    a = Leadership(make_lease(pg, "a", ttl=30.0), ttl=30.0, renew=10.0)
    await a.step(a.lease, time.monotonic())
    assert a.is_leader and a.term == 1
    pg.fence = a.fence
    with pg.write(fenced=True) as session:
        session.add(ProbeRow(version="v1", at=1.0, ok=True))
    with pg.write() as session:  # a stopped renewing long ago: its lease ran out
        session.execute(text("UPDATE monitor_lease SET expires_at = clock_timestamp()"))
    wait_for_acquire(make_lease(pg, "b", ttl=5.0))
    assert a.is_leader  # as if its local deadline had not noticed
    with pytest.raises(Fenced), pg.write(fenced=True) as session:
        session.add(ProbeRow(version="v1", at=2.0, ok=False))
    with pg.read() as session:
        assert [p.at for p in session.exec(select(ProbeRow))] == [1.0]


def test_it_makes_a_takeover_wait_for_a_fenced_write_in_flight(pg):
    ttl = 2.5
    a = Leadership(make_lease(pg, "a", ttl=ttl), ttl=ttl, renew=1.0)
    taken_at = time.monotonic()
    a.term, a.valid_until = a.lease.acquire(), taken_at + 60
    pg.fence = a.fence
    b = make_lease(pg, "b", ttl=5.0)
    order: list[str] = []
    taker = threading.Thread(target=lambda: (wait_for_acquire(b), order.append("taken")))
    with pg.write(fenced=True) as session:
        session.add(ProbeRow(version="v1", at=1.0, ok=True))
        # the lease expires in the database while this write is open
        time.sleep(max(0.0, taken_at + ttl + 0.3 - time.monotonic()))
        taker.start()
        time.sleep(0.3)
        order.append("committed")
    taker.join(timeout=20)
    assert order == ["committed", "taken"]


async def test_it_releases_on_stop_and_reports_the_leader(pg):
    a = Leadership(make_lease(pg, "a"), ttl=5.0, renew=0.5)
    elected: list[int] = []

    async def on_elected(term: int) -> None:
        elected.append(term)

    a.on_elected = on_elected
    a.start()
    deadline = time.monotonic() + 20
    while not a.is_leader and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert elected == [1]
    view = a.view()
    assert view is not None and view["id"] == "a" and view["term"] == 1 and view["self"] is True
    await a.stop()
    assert not a.is_leader
    assert actions(pg)[-1][:2] == ("lease.released", "a")
    assert make_lease(pg, "b").acquire() == 2


@pytest.mark.parametrize("term, expires_in, elapsed, delay", [
    (1, None, 0.1, 0.9),        # a leader renews every renew interval
    (1, 0.3, 0.1, 0.9),         # ... whatever it saw as a follower before
    (None, None, 0.1, 0.9),     # a follower that saw no lease tries every interval
    (None, 0.3, 0.1, 0.22),     # one that did tries again just after that lease expires
    (None, 5.0, 0.1, 0.9),      # ... but at least every renew interval
    (None, -1.0, 0.1, 0.0),     # already expired: at once
])
def test_it_tries_to_take_over_just_after_the_seen_lease_expires(term, expires_in, elapsed,
                                                                  delay):
    lease = Lease(None, "b", ttl=3.0, audit_key=KEY)  # type: ignore[arg-type] - no SQL here
    lease.expires_in = expires_in
    leadership = Leadership(lease, ttl=3.0, renew=1.0)
    leadership.term = term
    assert leadership._next_attempt_in(lease, elapsed) == pytest.approx(delay)


def test_it_takes_over_from_a_leader_paused_inside_a_write(pg_cluster, pg):
    """A leader stopped mid-transaction holds the lease row share-locked; the server ends its
    idle session, so a follower still takes over (and the paused write never lands)."""
    paused_store = Store(pg.url, idle_in_transaction_ms=500)
    a = Leadership(Lease(paused_store, "a", ttl=1.0, audit_key=KEY), ttl=1.0, renew=0.3)
    a.term, a.valid_until = a.lease.acquire(), time.monotonic() + 60
    paused_store.fence = a.fence
    inside, resume = threading.Event(), threading.Event()
    outcome: list[str] = []

    def paused_leader() -> None:
        try:
            with paused_store.write(fenced=True) as session:
                session.add(ProbeRow(version="v1", at=1.0, ok=True))
                session.flush()
                inside.set()
                resume.wait(timeout=30)  # SIGSTOP ... SIGCONT
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome.append(type(exc).__name__)
        else:
            outcome.append("committed")

    thread = threading.Thread(target=paused_leader)
    thread.start()
    assert inside.wait(timeout=30)
    try:
        assert wait_for_acquire(make_lease(pg, "b", ttl=5.0)) == 2
    finally:
        resume.set()
        thread.join(timeout=30)
        paused_store.dispose()
    assert outcome and outcome != ["committed"]
    with pg.read() as session:
        assert list(session.exec(select(ProbeRow))) == []
