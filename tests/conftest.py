"""Fixtures shared by every layer of the tests, and the `e2e` marker.

Tests that start real processes are marked `e2e`: everything under tests/e2e and
tests/attacks, tests using a real-process fixture below, and tests marked by hand. The fast
suite is `pytest -m "not e2e"`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.storage.store import Store

TESTS = Path(__file__).resolve().parent
E2E_DIRS = (TESTS / "e2e", TESTS / "attacks")
REAL_PROCESS_FIXTURES = frozenset({"supervise"})  # tests/ops/test_supervisor.py: child processes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        in_e2e_dir = any(path.is_relative_to(d) for d in E2E_DIRS)
        uses_processes = REAL_PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
        if in_e2e_dir or uses_processes:
            item.add_marker(pytest.mark.e2e)


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
