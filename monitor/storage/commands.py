"""Operator actions clicked on a follower's dashboard, queued for the leader to apply.

A follower never acts: it writes one `operator_command` row (who, from where, what) and
answers at once. The leader polls the queue (about every 0.25 s) and applies each command
through the same code path as a click on its own dashboard, with the operator as the audit
actor and `request_id = "cmd-<id>"`.

Exactly once across leader changes: the action's audit row carries that request id and is
written in the action's own (fenced) transaction. Before applying a command the leader looks
for its audit row; when one exists (a leader died between applying and marking it done), the
command is only marked done.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum

from sqlalchemy import Index
from sqlmodel import Field, SQLModel, select

from monitor.storage.store import AuditRow, Store

log = logging.getLogger("monitor.storage.commands")
REQUEST_PREFIX = "cmd-"
BATCH = 20


class CommandKind(StrEnum):
    FAILOVER = "failover"
    FAILBACK = "failback"
    PAUSE = "pause"
    RESUME = "resume"
    CHAOS = "chaos"
    ROLLOUT = "rollout"


class CommandStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"


class CommandRow(SQLModel, table=True):
    __tablename__ = "operator_command"
    __table_args__ = (Index("ix_operator_command_status_id", "status", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    created_at: float
    kind: str
    params: str = "{}"
    actor: str
    role: str
    source_ip: str = ""
    user_agent: str = ""
    queued_by: str = ""
    status: str = CommandStatus.PENDING
    applied_at: float | None = None
    applied_by: str | None = None
    result: str = ""

    @property
    def request_id(self) -> str:
        return f"{REQUEST_PREFIX}{self.id}"

    def arguments(self) -> dict[str, object]:
        loaded = json.loads(self.params)
        return loaded if isinstance(loaded, dict) else {}


def is_command_request(request_id: str) -> bool:
    return request_id.startswith(REQUEST_PREFIX)


def queue(store: Store, kind: CommandKind, params: Mapping[str, object], *, actor: str,
          role: str, source_ip: str, user_agent: str, queued_by: str, now: float) -> int:
    """Queue one action for the leader (a plain write: followers may queue)."""
    with store.write() as session:
        row = CommandRow(created_at=now, kind=kind.value, actor=actor, role=role,
                         params=json.dumps(dict(params), sort_keys=True, default=str),
                         source_ip=source_ip, user_agent=user_agent, queued_by=queued_by)
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def pending(store: Store, *, limit: int = BATCH) -> list[CommandRow]:
    with store.read() as session:
        return list(session.exec(
            select(CommandRow).where(CommandRow.status == CommandStatus.PENDING)
            .order_by(CommandRow.id).limit(limit)))  # type: ignore[arg-type]


def get(store: Store, command_id: int) -> CommandRow | None:
    with store.read() as session:
        return session.get(CommandRow, command_id)


def applied_before(store: Store, command: CommandRow) -> bool:
    with store.read() as session:
        found = session.exec(select(AuditRow.seq).where(
            AuditRow.request_id == command.request_id).limit(1)).first()
        return found is not None


def mark_done(store: Store, command_id: int, *, result: str, by: str, now: float) -> None:
    """Fenced: only the leader closes a command."""
    with store.write(fenced=True) as session:
        row = session.get(CommandRow, command_id)
        if row is not None and row.status == CommandStatus.PENDING:
            row.status, row.result = CommandStatus.DONE.value, result[:500]
            row.applied_at, row.applied_by = now, by
            session.add(row)


Handler = Callable[[CommandRow], Awaitable[tuple[bool, str]]]
