"""Audit checkpoint anchor (lines written, last signature) and the index on `audit.mac`.

Revision ID: 0003
Revises: 0002

Databases created before migrations by a monitor that already had these (stamped at 0001)
keep theirs: both are created only when missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("audit_anchor"):
        op.create_table(
            "audit_anchor",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("lines", sa.Integer(), nullable=False),
            sa.Column("last_sig", sa.String(), nullable=False),
            sa.Column("mac", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if "ix_audit_mac" not in {index["name"] for index in inspector.get_indexes("audit")}:
        op.create_index("ix_audit_mac", "audit", ["mac"])


def downgrade() -> None:
    op.drop_index("ix_audit_mac", "audit")
    op.drop_table("audit_anchor")
