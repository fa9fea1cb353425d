"""Schema versions: Alembic migrations at start, on SQLite and PostgreSQL."""

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from monitor.storage import (  # noqa: F401 - their tables join the metadata
    commands,
    lease,
    probe_fold,
    specs,
    tiers,
)
from monitor.storage.schema import current_revision, head_revision, migrate
from monitor.storage.store import AuditRow, Store, User
from tests.storage.postgres import BACKENDS, empty_database_url


@pytest.fixture
def migrated_only(request, tmp_path):
    """A database built by the migrations alone (no tables created from the models)."""
    store = Store(empty_database_url(request, tmp_path))
    migrate(store, models_too=False)
    yield store
    store.dispose()


@pytest.mark.parametrize("migrated_only", BACKENDS, indirect=True)
def test_it_migrates_to_the_schema_the_models_declare(migrated_only):
    store = migrated_only
    with store.writer.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection),
                                       SQLModel.metadata)
    assert differences == []
    assert current_revision(store) == head_revision()


def test_it_runs_the_migrations_again_without_change(store):
    with store.write() as session:
        session.add(User(name="ann", role="admin", password_hash="x"))
    assert migrate(store) == head_revision()
    with store.read() as session:
        assert [u.name for u in session.exec(select(User))] == ["ann"]


def test_it_stamps_and_upgrades_a_database_created_before_migrations(tmp_path):
    path = tmp_path / "old.db"
    legacy = Store(f"sqlite:///{path}")
    tables = [t for name, t in SQLModel.metadata.tables.items()
              if name not in ("monitor_lease", "operator_command")]  # as create_all did
    SQLModel.metadata.create_all(legacy.writer, tables=tables)
    with legacy.write() as session:
        session.add(AuditRow(seq=1, ts="t", actor="a", action="x", prev_mac="p", mac="m"))
    legacy.dispose()

    store = Store(f"sqlite:///{path}")
    store.create_all()
    assert current_revision(store) == head_revision()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM operator_command").fetchone() == (0,)
    store.dispose()
