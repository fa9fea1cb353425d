"""Storage tests run against SQLite and a private PostgreSQL 15 cluster."""

import pytest

from monitor.storage.store import Store
from tests.storage.postgres import BACKENDS, backend_store


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    yield from backend_store(request, tmp_path)


@pytest.fixture
def sqlite_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/m.db")
    store.create_all()
    yield store
    store.dispose()

