"""The schema as it was before migrations: state, probes, rollups, audit, notices, users.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sa.String
    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        *[sa.Column(name, text(), nullable=False) for name in (
            "ts", "actor", "role", "source_ip", "user_agent", "action", "target", "params",
            "outcome", "reason", "request_id", "evidence", "prev_mac", "mac")],
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_action_seq", "audit", ["action", "seq"])
    op.create_index("ix_audit_actor_seq", "audit", ["actor", "seq"])
    op.create_index("ix_audit_ts", "audit", ["ts"])
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", text(), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("summary", text(), nullable=False),
        sa.Column("last_reminder_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incident_closed_at", "incident", ["closed_at"])
    op.create_index("ix_incident_opened_at", "incident", ["opened_at"])
    op.create_table(
        "monitor_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("active", text(), nullable=False),
        sa.Column("record", text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", text(), nullable=False),
        sa.Column("kind", text(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("subject", text(), nullable=False),
        sa.Column("payload", text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("status", text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", text(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("batch_id", text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index("ix_notice_batch_id", "notice", ["batch_id"])
    op.create_index("ix_notice_created_at", "notice", ["created_at"])
    op.create_index("ix_notice_status_next", "notice", ["status", "next_attempt_at"])
    op.create_table(
        "probe",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("failure", text(), nullable=True),
        sa.Column("detail", text(), nullable=False),
        sa.Column("passive", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_probe_at", "probe", ["at"])
    op.create_index("ix_probe_version_at", "probe", ["version", "at"])
    op.create_table(
        "probe_rollup",
        sa.Column("version", text(), nullable=False),
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("ok_count", sa.Integer(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency_max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("version", "bucket"),
    )
    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", text(), nullable=False),
        sa.Column("role", text(), nullable=False),
        sa.Column("password_hash", text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "notice_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", text(), nullable=False),
        sa.ForeignKeyConstraint(["notice_id"], ["notice.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notice_attempt_notice_id", "notice_attempt", ["notice_id"])


def downgrade() -> None:
    for table in ("notice_attempt", "user", "probe_rollup", "probe", "notice", "monitor_state",
                  "incident", "audit"):
        op.drop_table(table)
