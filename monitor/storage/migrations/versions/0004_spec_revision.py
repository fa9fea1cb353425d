"""Applied spec revisions (desired state): the whole YAML text of every `apply`.

Revision ID: 0004
Revises: 0003

Created only when missing, like 0003, for databases stamped at 0001 by a monitor that
already had the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("spec_revision"):
        return
    op.create_table(
        "spec_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_spec_revision_digest", "spec_revision", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_spec_revision_digest", "spec_revision")
    op.drop_table("spec_revision")
