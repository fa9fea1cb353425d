"""Alembic environment: always online, on the connection the monitor hands over.

`monitor.storage.schema.migrate` puts an open connection in `config.attributes["connection"]`,
so migrations run inside the monitor's own engine (SQLite pragmas, psycopg), never from an
alembic.ini URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection


def run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run migrations through monitor.storage.schema.migrate")
    context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite",
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


run()
