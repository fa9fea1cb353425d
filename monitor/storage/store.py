"""SQLModel tables and small repository functions on SQLite (WAL) or PostgreSQL (psycopg 3).

Writes go through `Store.write()`: one transaction, opened with `BEGIN IMMEDIATE` on SQLite, so
appends to the audit chain and compare-and-set on the monitor state are serialised even across
processes (the CLI and the running monitor); on PostgreSQL audit appends take a transaction
advisory lock instead (`audit.append`). Reads use a separate engine with deferred
transactions, so a page never takes the write lock.

`write(fenced=True)` is for writes that act (state, decisions, chaos, notice claims,
checkpoints): its first statement is the leader check of `Store.fence` (see
`monitor.storage.lease`), in the same transaction, so a monitor that lost the lease writes
nothing. Without a fence (SQLite, one monitor) it is a plain write.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Index, UniqueConstraint, event, text
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

log = logging.getLogger("monitor.storage")
SECURITY_ROW = "security_row"  # session.info flag set by audit.append
READY_BUSY_MS = 200
BACKUP_PAGES = 4096  # pages per backup step (16 MiB at 4 KiB pages): progress between steps
DEFAULT_SERVICE = "books"  # the zero-configuration service; rows from before services are its


class ProbeRow(SQLModel, table=True):
    __tablename__ = "probe"
    __table_args__ = (Index("ix_probe_version_at", "version", "at"),
                      Index("ix_probe_service_at", "service", "at"))
    id: int | None = Field(default=None, primary_key=True)
    version: str
    service: str = DEFAULT_SERVICE
    at: float = Field(index=True)
    ok: bool
    latency_ms: float | None = None
    status: int | None = None
    failure: str | None = None
    detail: str = ""
    passive: bool = False


class ProbeRollup(SQLModel, table=True):
    """Probe results older than the retention window, folded per minute."""

    __tablename__ = "probe_rollup"
    version: str = Field(primary_key=True)
    bucket: float = Field(primary_key=True)
    count: int = 0
    ok_count: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    service: str = Field(default=DEFAULT_SERVICE, primary_key=True)


class StateRow(SQLModel, table=True):
    """The persisted state of one service; `epoch` is its compare-and-set guard."""

    __tablename__ = "monitor_state"
    __table_args__ = (Index("ix_monitor_state_service", "service", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    service: str = DEFAULT_SERVICE
    epoch: int = 0
    active: str
    record: str = "{}"
    updated_at: float = 0.0


class Incident(SQLModel, table=True):
    __tablename__ = "incident"
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    opened_at: float = Field(index=True)
    closed_at: float | None = Field(default=None, index=True)
    summary: str = ""
    last_reminder_at: float | None = None
    service: str = Field(default=DEFAULT_SERVICE, index=True)


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_actor_seq", "actor", "seq"),
        Index("ix_audit_action_seq", "action", "seq"),
        Index("ix_audit_ts", "ts"),
        Index("ix_audit_mac", "mac"),  # verification's look-up of a tampered row's neighbour
        Index("ix_audit_family_seq", "family", "seq"),  # the action filter, newest first
    )
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    ts: str
    actor: str
    role: str = ""
    source_ip: str = ""
    user_agent: str = ""
    action: str
    target: str = ""
    params: str = "{}"
    outcome: str = "ok"
    reason: str = ""
    request_id: str = ""
    evidence: str = "[]"
    prev_mac: str
    mac: str
    family: str = ""  # the action's first dotted part, for the filter; not chained


class Notice(SQLModel, table=True):
    """The outbox: one row per incident transition, written with the event that caused it."""

    __tablename__ = "notice"
    __table_args__ = (
        UniqueConstraint("message_id"),
        Index("ix_notice_status_next", "status", "next_attempt_at"),
        Index("ix_notice_service_created", "service", "created_at"),  # /notices?service=
    )
    id: int | None = Field(default=None, primary_key=True)
    message_id: str
    kind: str
    incident_id: int | None = None
    subject: str
    payload: str = "{}"
    created_at: float = Field(index=True)
    status: str = "pending"  # pending | sending | sent | failed | unsent
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""
    sent_at: float | None = None
    batch_id: str | None = Field(default=None, index=True)
    service: str = DEFAULT_SERVICE


class NoticeAttempt(SQLModel, table=True):
    __tablename__ = "notice_attempt"
    id: int | None = Field(default=None, primary_key=True)
    notice_id: int = Field(index=True, foreign_key="notice.id")
    at: float
    ok: bool
    error: str = ""


class User(SQLModel, table=True):
    __tablename__ = "user"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    role: str
    password_hash: str
    disabled: bool = False
    created_at: float = 0.0


def _without_nul(conn: object, cursor: object, statement: str, parameters: object,
                 context: object, executemany: bool) -> tuple[str, object]:
    """PostgreSQL text cannot hold NUL: a probe detail or a reason with one would make its
    whole transaction (a decision) fail, so NUL becomes a space in every bound string."""
    def scrub(values: object) -> object:
        if isinstance(values, dict):
            return {k: v.replace("\x00", " ") if isinstance(v, str) else v
                    for k, v in values.items()}
        if isinstance(values, (list, tuple)):
            return type(values)(scrub(v) if isinstance(v, (dict, list, tuple)) else
                                v.replace("\x00", " ") if isinstance(v, str) else v
                                for v in values)
        return values
    return statement, scrub(parameters)


class AuditAnchor(SQLModel, table=True):
    """How many checkpoint lines were written and the last one's signature (MAC'd), so a
    missing or shortened checkpoint file is caught (storage.checkpoints)."""

    __tablename__ = "audit_anchor"
    id: int = Field(default=1, primary_key=True)
    lines: int = 0
    last_sig: str = ""
    mac: str = ""


class StaleEpoch(Exception):
    """Another writer switched first: the compare-and-set on `epoch` failed."""


class Store:
    """Two engines on one database URL: an immediate-transaction writer and a reader."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000,
                 idle_in_transaction_ms: int = 0) -> None:
        """`idle_in_transaction_ms` (PostgreSQL): the server ends a session left idle inside a
        transaction that long, so a monitor paused mid-write (SIGSTOP, VM freeze) cannot hold
        the lease row or the audit lock while another monitor takes over; 0 = never."""
        self.url = url
        self.idle_in_transaction_ms = idle_in_transaction_ms
        # Called (in the writing thread) after a commit that appended a security-relevant
        # audit row (audit.SECURITY_ACTIONS): the runtime writes a checkpoint there.
        self.after_security_commit: Callable[[], None] | None = None
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite and url.startswith("sqlite:///") and ":memory:" not in url:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_ms = busy_timeout_ms
        self.writer = self._engine(immediate=True, busy_timeout_ms=busy_timeout_ms)
        self.reader = self._engine(immediate=False, busy_timeout_ms=busy_timeout_ms)
        self._bounded: dict[int, Engine] = {}  # writers with a shorter busy timeout
        self.fence: Callable[[Session], None] | None = None

    def _engine(self, *, immediate: bool, busy_timeout_ms: int) -> Engine:
        if not self.is_sqlite:
            options = f"-c idle_in_transaction_session_timeout={int(self.idle_in_transaction_ms)}"
            engine = create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                   connect_args={"options": options})
            event.listen(engine, "before_cursor_execute", _without_nul, retval=True)
            return engine
        engine = create_engine(
            self.url, connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            # FULL for the writer: a committed (and emailed, checkpointed) decision must survive
            # a power cut; readers never commit, NORMAL costs them nothing.
            cur.execute(f"PRAGMA synchronous={'FULL' if immediate else 'NORMAL'}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def create_all(self) -> None:
        """Bring the schema to the newest migration (Alembic), on SQLite and PostgreSQL."""
        from monitor.storage.schema import migrate

        migrate(self)

    def dispose(self) -> None:
        self.writer.dispose()
        self.reader.dispose()
        for engine in self._bounded.values():
            engine.dispose()

    def _writer(self, busy_timeout_ms: int | None) -> Engine:
        if busy_timeout_ms is None or busy_timeout_ms >= self.busy_timeout_ms \
                or not self.is_sqlite:
            return self.writer
        if busy_timeout_ms not in self._bounded:
            self._bounded[busy_timeout_ms] = self._engine(immediate=True,
                                                          busy_timeout_ms=busy_timeout_ms)
        return self._bounded[busy_timeout_ms]

    @contextmanager
    def write(self, *, busy_timeout_ms: int | None = None,
              fenced: bool = False) -> Iterator[Session]:
        """One write transaction; commits on success, rolls back on any exception.

        `busy_timeout_ms` bounds how long it waits for another writer's lock (the watchdog's
        decision path: a short wait, then the transaction is queued and journaled).
        `fenced=True`: an acting write, refused (lease.Fenced) unless this monitor leads."""
        with Session(self._writer(busy_timeout_ms), expire_on_commit=False) as session:
            with session.begin():
                if fenced and self.fence is not None:
                    self.fence(session)
                yield session
            if session.info.get(SECURITY_ROW) and self.after_security_commit is not None:
                try:
                    self.after_security_commit()
                except Exception:  # noqa: BLE001 - committed; the minute's checkpoint follows
                    log.exception("checkpoint after a security-relevant row failed")

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.reader, expire_on_commit=False) as session:
            yield session

    def writable(self) -> bool:
        """True when a write transaction can be opened now (for /readyz): waits at most
        READY_BUSY_MS, so a locked database makes readiness false, not slow."""
        try:
            with self.write(busy_timeout_ms=READY_BUSY_MS) as session:
                session.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False

    # Monitor state ------------------------------------------------------------------------
    def load_state(self, service: str = DEFAULT_SERVICE) -> dict[str, Any] | None:
        with self.read() as session:
            row = session.exec(select(StateRow).where(StateRow.service == service)).first()
            return None if row is None else cast(dict[str, Any], json.loads(row.record))

    @staticmethod
    def save_state(session: Session, record: dict[str, Any], *, expected_epoch: int | None,
                   now: float, service: str = DEFAULT_SERVICE) -> None:
        """Compare-and-set one service's state row on `epoch`; `expected_epoch=None` creates
        it (the default service's row keeps id 1, as before services existed)."""
        data = json.dumps(record, sort_keys=True)
        if expected_epoch is None:
            if session.exec(select(StateRow).where(StateRow.service == service)).first():
                raise StaleEpoch("state already exists")
            session.add(StateRow(id=1 if service == DEFAULT_SERVICE else None, service=service,
                                 active=record["active"], epoch=record["epoch"], record=data,
                                 updated_at=now))
            session.flush()
            return
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            text("UPDATE monitor_state SET epoch=:epoch, active=:active, record=:record, "
                 "updated_at=:now WHERE service=:service AND epoch=:expected"),
            {"epoch": record["epoch"], "active": record["active"], "record": data, "now": now,
             "expected": expected_epoch, "service": service},
        )
        if result.rowcount != 1:
            raise StaleEpoch(f"epoch is no longer {expected_epoch}")

    # Probes -------------------------------------------------------------------------------
    def probes(self, version: str | None = None, *, since: float = 0.0, limit: int = 100,
               offset: int = 0, service: str | None = None) -> list[ProbeRow]:
        with self.read() as session:
            query = select(ProbeRow).where(ProbeRow.at >= since)
            if version:
                query = query.where(ProbeRow.version == version)
            if service:
                query = query.where(ProbeRow.service == service)
            query = query.order_by(col(ProbeRow.at).desc()).offset(offset).limit(limit)
            return list(session.exec(query))

    def backup(self, path: Path, progress: Any = None) -> None:
        """A consistent copy while running (SQLite online backup API), in steps of
        BACKUP_PAGES pages; `progress` (storage.chain.Progress) counts pages."""
        if not self.is_sqlite:
            raise RuntimeError("backup supports SQLite only; use pg_dump for PostgreSQL")
        source = sqlite3.connect(self.url.removeprefix("sqlite:///"))
        target = sqlite3.connect(path)
        copied = {"pages": 0}

        def step(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                if copied["pages"] == 0:
                    progress.total(total)
                progress.advance(total - remaining - copied["pages"])
            copied["pages"] = total - remaining

        try:
            source.backup(target, pages=BACKUP_PAGES, progress=step)
        finally:
            target.close()
            source.close()
