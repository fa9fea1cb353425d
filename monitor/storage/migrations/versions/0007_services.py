"""Several services in one monitor: a `service` column on probes, rollups, incidents, notices
and the monitor state (one row per service). Rows written before are the default service's.

`probe_rollup` takes the service into its primary key; SQLite cannot alter a primary key, so
the table is copied (`batch_alter_table`). Columns already present (a database created from the
models, then stamped) are left as they are.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

DEFAULT = "books"
INDEXES = {  # table -> (index name, columns, unique)
    "probe": ("ix_probe_service_at", ["service", "at"], False),
    "incident": ("ix_incident_service", ["service"], False),
    "notice": ("ix_notice_service_created", ["service", "created_at"], False),
    "monitor_state": ("ix_monitor_state_service", ["service"], True),
}


def _service_column() -> sa.Column[str]:
    return sa.Column("service", sa.String(), nullable=False, server_default=DEFAULT)


def _has(table: str, column: str) -> bool:
    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _indexes(table: str) -> set[str]:
    return {i["name"] or "" for i in sa.inspect(op.get_bind()).get_indexes(table)}


def _copy_rollups(key: list[str], *, with_service: bool) -> None:
    """SQLite: a new probe_rollup with primary key `key`, the rows copied (the service of the
    old rows is the default), the old table dropped."""
    columns = ["version", "bucket", "count", "ok_count", "latency_sum", "latency_max"]
    op.create_table(
        "probe_rollup_new",
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("bucket", sa.Float(), nullable=False),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in ("count", "ok_count")],
        *[sa.Column(name, sa.Float(), nullable=False) for name in ("latency_sum", "latency_max")],
        *([_service_column()] if with_service else []),
        sa.PrimaryKeyConstraint(*key),
    )
    names = ", ".join(columns)
    op.execute(f"INSERT INTO probe_rollup_new ({names}) SELECT {names} FROM probe_rollup")  # noqa: S608 - fixed names
    op.drop_table("probe_rollup")
    op.rename_table("probe_rollup_new", "probe_rollup")


def upgrade() -> None:
    for table, (index, columns, unique) in INDEXES.items():
        if not _has(table, "service"):
            op.add_column(table, _service_column())
        if index not in _indexes(table):
            op.create_index(index, table, columns, unique=unique)
    if _has("probe_rollup", "service"):
        return
    if op.get_bind().dialect.name == "sqlite":
        _copy_rollups(["version", "bucket", "service"], with_service=True)
    else:
        op.add_column("probe_rollup", _service_column())
        op.drop_constraint("probe_rollup_pkey", "probe_rollup", type_="primary")
        op.create_primary_key("probe_rollup_pkey", "probe_rollup",
                              ["version", "bucket", "service"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _copy_rollups(["version", "bucket"], with_service=False)
    else:
        op.drop_constraint("probe_rollup_pkey", "probe_rollup", type_="primary")
        op.drop_column("probe_rollup", "service")
        op.create_primary_key("probe_rollup_pkey", "probe_rollup", ["version", "bucket"])
    for table, (index, _columns, _unique) in INDEXES.items():
        op.drop_index(index, table)
        op.drop_column(table, "service")
