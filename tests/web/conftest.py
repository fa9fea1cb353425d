"""A real Runtime (not started) on a temporary SQLite, with a fake clock, behind TestClient.

Services point at closed loopback ports, so nothing is spawned and chaos calls fail fast.
Password hashing uses real Argon2id with tiny parameters so the suite stays quick.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from monitor.runtime import create_runtime
from monitor.storage.users import add_user
from monitor.web.app import create_app
from monitor.web.events import AuditStream
from tests.web.support import CHEAP_HASHER, PASSWORDS, FakeClock, make_settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(tmp_path, clock):
    runtime = create_runtime(make_settings(tmp_path), clock=clock)
    for role, password in PASSWORDS.items():
        add_user(runtime.store, role, role, password, now=clock(), audit_key=runtime.keys.audit,
                 hasher=CHEAP_HASHER)
    yield runtime
    runtime.store.dispose()


@pytest.fixture
def app(runtime):
    app = create_app(runtime, hasher=CHEAP_HASHER)
    # event streams end quickly here, so a test that reads one whole does not wait minutes
    app.state.events = AuditStream(runtime.store, poll_interval=0.05, max_age=1.0)
    return app


@pytest.fixture
def client(app):
    return TestClient(app, raise_server_exceptions=False)

