"""Fixtures shared by every layer of the tests."""

import pytest

from monitor.storage.store import Store


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite store (WAL) in the test's temporary directory."""
    store = Store(f"sqlite:///{tmp_path}/m.db")
    store.create_all()
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL 15 cluster for the session (skipped without one, see postgres.py)."""
    from tests.storage.postgres import require_postgres, start_cluster

    require_postgres()
    cluster = start_cluster()
    yield cluster
    cluster.stop()
