"""Notices with several monitors: only the leader claims and sends; claims skip locked rows."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlmodel import select

from monitor.storage.lease import Fenced
from monitor.storage.store import Notice, NoticeAttempt, Store
from tests.notices.test_delivery import T0, Clock, FakeServer, Notifier, add, make_settings


def statuses(store: Store) -> list[str]:
    with store.read() as session:
        return [n.status for n in session.exec(select(Notice).order_by(Notice.id))]


def refuse(session) -> None:
    raise Fenced("another monitor leads")


async def test_it_claims_nothing_once_another_monitor_leads(store, tmp_path):
    add(store, 0)
    store.fence = refuse
    server = FakeServer()
    notifier = Notifier(make_settings(tmp_path), store, transport=server, clock=Clock().at(10))
    assert await notifier.deliver_due() == 0
    assert server.sent == [] and statuses(store) == ["pending"]


async def test_it_sends_nothing_when_the_lead_was_lost_after_the_claim(store, tmp_path):
    add(store, 0)
    leading = iter([False])  # asked once: just before the SMTP call
    server = FakeServer()
    notifier = Notifier(make_settings(tmp_path), store, transport=server, clock=Clock().at(10),
                        may_send=lambda: next(leading))
    assert await notifier.deliver_due() == 0
    assert server.sent == []
    assert statuses(store) == ["sending"]  # the new leader resends it once the claim expires
    with store.read() as session:
        assert list(session.exec(select(NoticeAttempt))) == []


async def test_it_skips_notices_another_claimer_holds_instead_of_waiting(store, tmp_path):
    if store.is_sqlite:
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE: nothing to skip")
    add(store, 0)
    server = FakeServer()
    notifier = Notifier(make_settings(tmp_path), store, transport=server, clock=Clock().at(10))
    held, release = threading.Event(), threading.Event()

    def other_claimer() -> None:
        with store.writer.begin() as conn:
            conn.execute(text("SELECT id FROM notice FOR UPDATE"))
            held.set()
            release.wait(timeout=30)

    thread = threading.Thread(target=other_claimer)
    thread.start()
    assert held.wait(timeout=30)
    try:
        assert notifier.deliver_due_sync() == 0  # returns at once: the row is skipped
        assert server.sent == []
    finally:
        release.set()
        thread.join(timeout=30)
    notifier.clock = Clock(T0 + 11)
    assert notifier.deliver_due_sync() == 1 and len(server.sent) == 1
