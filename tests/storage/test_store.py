"""The store: compare-and-set state, bounded retention, online backup, SQLite pragmas."""

import sqlite3

import pytest

from monitor.storage.store import ProbeRow, StaleEpoch, Store


def record(active="v1", epoch=0):
    return {"active": active, "epoch": epoch, "paused": False}


def test_it_switches_state_only_by_compare_and_set_on_the_epoch(store):
    with store.write() as session:
        store.save_state(session, record(), expected_epoch=None, now=1.0)
    with store.write() as session:
        store.save_state(session, record("v2", 1), expected_epoch=0, now=2.0)
    with pytest.raises(StaleEpoch), store.write() as session:
        store.save_state(session, record("v3", 1), expected_epoch=0, now=3.0)
    with pytest.raises(StaleEpoch), store.write() as session:
        store.save_state(session, record(), expected_epoch=None, now=3.0)
    assert store.load_state() == record("v2", 1)


def test_it_takes_a_consistent_backup_while_a_writer_is_open(sqlite_store, tmp_path):
    store = sqlite_store
    with store.write() as session:
        session.add(ProbeRow(version="v2", at=1.0, ok=True))
    with store.write() as session:
        session.add(ProbeRow(version="v3", at=2.0, ok=False))
        store.backup(tmp_path / "copy.db")  # the open transaction is not in the copy
    with sqlite3.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("SELECT version FROM probe").fetchall() == [("v2",)]


def test_it_runs_sqlite_in_wal_mode_with_a_busy_timeout(sqlite_store):
    store = sqlite_store
    with store.writer.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_it_reports_whether_the_database_is_writable(sqlite_store, tmp_path):
    store = sqlite_store
    assert store.writable()
    blocker = sqlite3.connect(tmp_path / "m.db")
    blocker.execute("BEGIN EXCLUSIVE")
    busy = Store(f"sqlite:///{tmp_path}/m.db", busy_timeout_ms=50)
    try:
        assert not busy.writable()
    finally:
        blocker.rollback()
        blocker.close()
        busy.dispose()
