"""The audit chain on both backends: appends from several monitors never fork it."""

import threading

import pytest
from sqlalchemy import text
from sqlmodel import select

from monitor.storage import audit
from monitor.storage.checkpoints import read_checkpoints, write_checkpoint
from monitor.storage.store import AuditRow, Store

KEY = b"k" * 32


def append_many(store: Store, who: str, count: int, start: threading.Barrier) -> None:
    start.wait()
    for index in range(count):
        with store.write() as session:
            audit.append(session, KEY, now=1000.0 + index, action="test.step", actor=who)


def test_it_keeps_one_chain_when_two_monitors_append_at_once(store):
    other = Store(store.url)  # a second monitor: its own engines and connections
    start = threading.Barrier(4)
    threads = [threading.Thread(target=append_many, args=(s, f"{name}{n}", 15, start))
               for n, (s, name) in enumerate([(store, "a"), (store, "a"), (other, "b"),
                                               (other, "b")])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    other.dispose()
    report = audit.verify(store, KEY)
    assert report.ok and report.summary() == "60/60 records valid"
    with store.read() as session:
        assert list(session.exec(select(AuditRow.seq).order_by(AuditRow.seq))) == list(
            range(1, 61))


def test_it_detects_an_edited_row_on_either_backend(store):
    for index in range(3):
        with store.write() as session:
            audit.append(session, KEY, now=1000.0 + index, action="test.step", actor="ann")
    with store.writer.begin() as conn:
        conn.execute(text("UPDATE audit SET actor = 'eve' WHERE seq = 2"))
    report = audit.verify(store, KEY)
    assert [(p.seq, p.kind) for p in report.problems] == [(2, "modified")]


def test_it_keeps_one_checkpoint_anchor_per_monitor_on_a_shared_database(store, tmp_path):
    if store.is_sqlite:
        pytest.skip("SQLite has one monitor (the data dir is locked): one anchor row")
    with store.write() as session:
        audit.append(session, KEY, now=1000.0, action="test.step", actor="ann")
    mine, theirs = tmp_path / "a" / "audit.checkpoints", tmp_path / "b" / "audit.checkpoints"
    for now, path in ((1.0, mine), (2.0, mine), (3.0, theirs)):
        write_checkpoint(store, KEY, path, now=now)
    assert read_checkpoints(KEY, mine, store).problems == []
    assert read_checkpoints(KEY, theirs, store).problems == []
    theirs.unlink()
    assert "missing" in " ".join(read_checkpoints(KEY, theirs, store).problems)
    assert read_checkpoints(KEY, mine, store).problems == []
