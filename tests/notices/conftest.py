"""Notice tests run against SQLite and a private PostgreSQL 15 cluster."""

import pytest

from tests.storage.postgres import BACKENDS, backend_store


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    yield from backend_store(request, tmp_path)
