"""Audit archive records (`audit_segment`) and the action family column and index.

Revision ID: 0005
Revises: 0004

`audit.family` is an action's first dotted part (`login` for `login.failed`), kept beside the
chained fields (not part of a row's MAC): the dashboard's action filter pages through the index
(family, seq) newest first instead of scanning the table. Existing rows are backfilled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table("audit_segment"):
        op.create_table(
            "audit_segment",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("first_seq", sa.Integer(), nullable=False),
            sa.Column("last_seq", sa.Integer(), nullable=False),
            sa.Column("rows", sa.Integer(), nullable=False),
            sa.Column("last_mac", sa.String(), nullable=False),
            sa.Column("sha256", sa.String(), nullable=False),
            sa.Column("file", sa.String(), nullable=False),
            sa.Column("at", sa.String(), nullable=False),
            sa.Column("prev", sa.String(), nullable=False),
            sa.Column("mac", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if "family" not in {column["name"] for column in inspector.get_columns("audit")}:
        with op.batch_alter_table("audit") as batch:
            batch.add_column(sa.Column("family", sa.String(), nullable=False,
                                       server_default=""))
        first = ("split_part(action, '.', 1)" if bind.dialect.name == "postgresql" else
                 "CASE WHEN instr(action, '.') > 0 THEN substr(action, 1, instr(action, '.') - 1)"
                 " ELSE action END")
        op.execute(f"UPDATE audit SET family = {first}")  # noqa: S608 - constant SQL
    if "ix_audit_family_seq" not in {index["name"] for index in inspector.get_indexes("audit")}:
        op.create_index("ix_audit_family_seq", "audit", ["family", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_family_seq", "audit")
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("family")
    op.drop_table("audit_segment")
