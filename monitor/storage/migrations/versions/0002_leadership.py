"""Several monitors on one PostgreSQL: the leader lease and queued operator commands.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(  # one row (id 1), inserted here: see monitor.storage.lease
        "monitor_lease",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(), nullable=True),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id"),
    )
    lease = sa.table("monitor_lease", sa.column("id", sa.Integer()),
                     sa.column("term", sa.BigInteger()), sa.column("released", sa.Boolean()))
    op.bulk_insert(lease, [{"id": 1, "term": 0, "released": False}])
    op.create_table(
        "operator_command",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("params", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("source_ip", sa.String(), nullable=False),
        sa.Column("user_agent", sa.String(), nullable=False),
        sa.Column("queued_by", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("applied_at", sa.Float(), nullable=True),
        sa.Column("applied_by", sa.String(), nullable=True),
        sa.Column("result", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_operator_command_status_id", "operator_command", ["status", "id"])


def downgrade() -> None:
    op.drop_table("operator_command")
    op.drop_table("monitor_lease")
