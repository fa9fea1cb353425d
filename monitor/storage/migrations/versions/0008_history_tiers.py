"""History tiers: hourly probe rollups (per service), the minute rollups' time index, and the
mark of the raw probes already counted in the minute tier.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "probe_hourly" not in tables:
        op.create_table(
            "probe_hourly",
            sa.Column("service", sa.String(), nullable=False),
            sa.Column("version", sa.String(), nullable=False),
            sa.Column("bucket", sa.Float(), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.Column("ok_count", sa.Integer(), nullable=False),
            sa.Column("latency_sum", sa.Float(), nullable=False),
            sa.Column("latency_max", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("service", "version", "bucket"),
        )
        op.create_index("ix_probe_hourly_bucket", "probe_hourly", ["bucket"])
    if "rollup_mark" not in tables:
        op.create_table(
            "rollup_mark",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("probe_id", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("probe_rollup")}
    if "ix_probe_rollup_bucket" not in indexes:
        op.create_index("ix_probe_rollup_bucket", "probe_rollup", ["bucket"])


def downgrade() -> None:
    op.drop_index("ix_probe_rollup_bucket", table_name="probe_rollup")
    op.drop_table("rollup_mark")
    op.drop_table("probe_hourly")
