"""Applied spec revisions: every `apply` stores the whole YAML text as a new revision.

The newest row is the desired state. Rows are never updated; the audit row written in the
same transaction carries the diff, so the history of the desired state is the audit log.
A monitor (leader or not) reads the newest revision on every sync, so an `apply` through the
CLI reaches a running monitor without a restart.
"""

from __future__ import annotations

from sqlmodel import Field, Session, SQLModel, select


class SpecRevision(SQLModel, table=True):
    __tablename__ = "spec_revision"
    id: int | None = Field(default=None, primary_key=True)
    applied_at: float
    actor: str
    digest: str = Field(index=True)
    text: str


def newest(session: Session) -> SpecRevision | None:
    return session.exec(select(SpecRevision).order_by(SpecRevision.id.desc())  # type: ignore[union-attr]
                        .limit(1)).first()


def add(session: Session, *, text: str, digest: str, actor: str, now: float) -> SpecRevision:
    row = SpecRevision(applied_at=now, actor=actor, digest=digest, text=text)
    session.add(row)
    session.flush()
    return row
