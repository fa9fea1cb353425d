"""Schema versions: Alembic migrations run at start, on SQLite and PostgreSQL alike.

`migrate(store)` brings the database to the newest revision under `migrations/versions`.
A database created before migrations existed (tables present, no `alembic_version`) is stamped
at revision 0001, the schema it already has, and upgraded from there. On PostgreSQL the upgrade
holds a session advisory lock, so monitors starting together migrate one after the other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from monitor.storage.store import Store

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
MIGRATE_LOCK = 0x6D6F6E6D  # pg_advisory_lock key while migrating ("monm")
log = logging.getLogger("monitor.storage.schema")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations under {MIGRATIONS}")
    return head


def current_revision(store: Store) -> str | None:
    with store.writer.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(store: Store, *, models_too: bool = True) -> str:
    """Upgrade to the newest revision; returns it. Idempotent. `models_too` also creates a
    table a model declares that no migration creates yet (tests turn it off to find those)."""
    from monitor.storage import (  # noqa: F401 - their tables join the metadata
        commands,
        lease,
        probe_fold,
        rollouts,
        segments,
        specs,
        tiers,
    )

    with store.writer.connect() as connection:
        if not store.is_sqlite:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_LOCK})
            connection.commit()
        try:
            _upgrade(connection)
        finally:
            if not store.is_sqlite:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": MIGRATE_LOCK})
                connection.commit()
    # A table a model declares but no migration creates yet (a branch merged before its
    # migration) is still created, so nothing breaks; tests compare migrations and models.
    if models_too:
        SQLModel.metadata.create_all(store.writer)
    return head_revision()


def _upgrade(connection: Connection) -> None:
    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "monitor_state" in tables:
        log.info("database predates migrations: stamping revision %s", BASELINE)
        command.stamp(config, BASELINE)
        connection.commit()
    command.upgrade(config, "head")
    connection.commit()
