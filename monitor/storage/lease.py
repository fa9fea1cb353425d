"""Leader lease for several monitors on one PostgreSQL (client-go leader election, Patroni).

One row (`monitor_lease`, id 1) holds the holder, a term and an expiry measured by the
database clock (`clock_timestamp()`), so the monitors' own clocks never matter.

- **Acquire** (compare-and-set under the row lock): when the lease is free (released, expired,
  or already ours) take it with `term + 1`. The same transaction audits `lease.acquired`, and
  `lease.lost` for a previous holder whose lease ran out without a release.
- **Renew** every `renew` seconds: only by the holder, at its term, before expiry.
- **Renew deadline** (`RENEW_DEADLINE` x TTL, 10 s of 15 in client-go): a leader whose last
  successful renew *started* longer ago than that stops acting, before the lease can expire
  in the database and another monitor can take it.
- **Fencing**: every acting write starts with `check()`: holder, term and expiry read under
  `FOR SHARE` in the write's own transaction. A takeover (`FOR UPDATE`) waits for the write,
  and any write after it is refused with `Fenced`. A paused-then-resumed leader writes nothing.
- **Release** on clean shutdown: expiry set to now and `released`, audited as
  `lease.released`; a follower takes over at its next attempt (one renew interval).

With SQLite there is one monitor (the data dir is locked): `Leadership.single()` always leads,
fences nothing, and shows no lease (`leader` is null in /api/status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel

from monitor.config import Settings
from monitor.storage import audit
from monitor.storage.store import Store

log = logging.getLogger("monitor.storage.lease")
RENEW_DEADLINE = 2 / 3  # of the TTL: client-go's 10 s renew deadline of a 15 s lease
TAKEOVER_MARGIN_S = 0.02


class LeaseRow(SQLModel, table=True):
    __tablename__ = "monitor_lease"
    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    holder: str | None = None
    term: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))
    acquired_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    renewed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    released: bool = False


class Fenced(Exception):
    """An acting write was refused: this monitor does not hold the lease at its term."""


@dataclass(frozen=True)
class LeaseView:
    holder: str | None
    term: int
    renewed_at: datetime | None
    expires_at: datetime | None
    released: bool


def acting(valid_until: float | None, now: float) -> bool:
    """A leader acts only before its renew deadline (monotonic seconds)."""
    return valid_until is not None and now < valid_until


class Lease:
    """The lease row's SQL (PostgreSQL); blocking, so callers run it in a thread."""

    def __init__(self, store: Store, holder: str, *, ttl: float, audit_key: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.holder, self.ttl = store, holder, ttl
        self.audit_key, self.clock = audit_key, clock
        self.expires_in: float | None = None  # after a refused acquire: seconds left to it

    def ensure_row(self) -> None:
        with self.store.write() as session:
            session.execute(text("INSERT INTO monitor_lease (id, term, released) "
                                 "VALUES (1, 0, false) ON CONFLICT (id) DO NOTHING"))

    def read(self) -> LeaseView | None:
        with self.store.read() as session:
            row = session.get(LeaseRow, 1)
            if row is None:
                return None
            return LeaseView(row.holder, row.term, row.renewed_at, row.expires_at, row.released)

    def acquire(self) -> int | None:
        """Take the lease if it is free; returns the new term, or None (someone else leads)."""
        with self.store.write() as session:
            # never wait long on the row: a stalled holder's session is ended by the server
            session.execute(text(f"SET LOCAL lock_timeout = {int(self.ttl * 1000)}"))
            row = session.execute(text(
                "SELECT holder, term, released, expires_at <= clock_timestamp() AS expired, "
                "expires_at, EXTRACT(EPOCH FROM expires_at - clock_timestamp()) AS remaining "
                "FROM monitor_lease WHERE id = 1 FOR UPDATE")).first()
            if row is None:
                raise RuntimeError("the lease row is missing (run migrations)")
            free = row.holder is None or row.released or row.expired or row.holder == self.holder
            self.expires_in = None if free else float(row.remaining)
            if not free:
                return None
            term = int(row.term) + 1
            session.execute(text(
                "UPDATE monitor_lease SET holder = :me, term = :term, released = false, "
                "acquired_at = clock_timestamp(), renewed_at = clock_timestamp(), "
                "expires_at = clock_timestamp() + make_interval(secs => :ttl) WHERE id = 1"),
                {"me": self.holder, "term": term, "ttl": self.ttl})
            now = self.clock()
            previous = row.holder if row.holder != self.holder else None
            if previous and not row.released:
                audit.append(session, self.audit_key, now=now, action="lease.lost",
                             target=previous, params={"term": int(row.term), "by": self.holder},
                             reason=f"lease expired at {row.expires_at} without a renewal")
            how = "handover" if previous and row.released else (
                "takeover" if previous else "first" if row.holder is None else "renewed late")
            audit.append(session, self.audit_key, now=now, action="lease.acquired",
                         target=self.holder,
                         params={"term": term, "previous": row.holder, "how": how,
                                 "ttl_s": self.ttl})
            return term

    def renew(self, term: int) -> bool:
        with self.store.write() as session:
            result = session.execute(text(
                "UPDATE monitor_lease SET renewed_at = clock_timestamp(), "
                "expires_at = clock_timestamp() + make_interval(secs => :ttl) "
                "WHERE id = 1 AND holder = :me AND term = :term AND NOT released "
                "AND expires_at > clock_timestamp() RETURNING term"),
                {"me": self.holder, "term": term, "ttl": self.ttl}).first()
            return result is not None

    def release(self, term: int) -> bool:
        """Give the lease up at once (clean shutdown); audited in the same transaction."""
        with self.store.write() as session:
            result = session.execute(text(
                "UPDATE monitor_lease SET released = true, expires_at = clock_timestamp() "
                "WHERE id = 1 AND holder = :me AND term = :term AND NOT released "
                "AND expires_at > clock_timestamp() RETURNING term"),
                {"me": self.holder, "term": term}).first()
            if result is None:
                return False
            audit.append(session, self.audit_key, now=self.clock(), action="lease.released",
                         target=self.holder, params={"term": term})
            return True

    def check(self, session: Session, term: int) -> None:
        """Refuse (Fenced) unless this monitor holds the unexpired lease at `term`; the row
        stays share-locked until the caller's transaction ends."""
        row = session.execute(text(
            "SELECT term FROM monitor_lease WHERE id = 1 AND holder = :me AND term = :term "
            "AND NOT released AND expires_at > clock_timestamp() FOR SHARE"),
            {"me": self.holder, "term": term}).first()
        if row is None:
            raise Fenced(f"{self.holder} no longer leads at term {term}")


Callback = Callable[[int], Awaitable[None]]


async def _nothing(term: int) -> None:
    return None


class Leadership:
    """The elector loop around `Lease`, and what the rest of the monitor asks of it.

    `is_leader` is true between a successful acquire (after `on_elected` ran) and the renew
    deadline of the last successful renew; `fence` is installed as `Store.fence`.
    """

    def __init__(self, lease: Lease | None, *, ttl: float, renew: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.lease, self.ttl, self.renew = lease, ttl, renew
        self.deadline = ttl * RENEW_DEADLINE
        self.monotonic = monotonic
        self.term: int | None = None
        self.valid_until: float | None = None
        self.on_elected: Callback = _nothing
        self.on_lost: Callback = _nothing
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @classmethod
    def single(cls) -> Leadership:
        """SQLite: the only monitor, always leading, no lease."""
        return cls(None, ttl=0.0, renew=0.0)

    @property
    def shared(self) -> bool:
        return self.lease is not None

    @property
    def holder(self) -> str | None:
        return self.lease.holder if self.lease else None

    @property
    def is_leader(self) -> bool:
        if self.lease is None:
            return True
        return acting(self.valid_until, self.monotonic())

    def fence(self, session: Session) -> None:
        """Store.fence: the local deadline first (no round trip), then the database."""
        if self.lease is None:
            return
        term = self.term
        if term is None or not self.is_leader:
            raise Fenced(f"{self.lease.holder} is not leading")
        self.lease.check(session, term)

    def view(self) -> dict[str, object] | None:
        """/api/status `leader`: null with SQLite."""
        if self.lease is None:
            return None
        try:
            seen = self.lease.read()
        except SQLAlchemyError:  # the database is away: say what this monitor knows
            return {"id": self.lease.holder if self.is_leader else None, "term": self.term,
                    "renewed_at": None, "self": self.is_leader}
        if seen is None or seen.holder is None or seen.released:
            return {"id": None, "term": seen.term if seen else 0, "renewed_at": None,
                    "self": False}
        return {"id": seen.holder, "term": seen.term,
                "renewed_at": audit.utc_iso(seen.renewed_at) if seen.renewed_at else None,
                "self": seen.holder == self.lease.holder and self.is_leader}

    # The loop -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.lease is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="leadership")

    async def stop(self) -> None:
        """Stop the loop and release the lease at once if this monitor holds it."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        term, was_leading = self.term, self.is_leader
        self.term, self.valid_until = None, None
        if self.lease is not None and term is not None and was_leading:
            try:
                if await asyncio.to_thread(self.lease.release, term):
                    log.info("lease released (term %d)", term)
            except Exception as exc:  # noqa: BLE001 - it then expires after the TTL
                log.warning("could not release the lease: %s", exc)

    async def _run(self) -> None:
        assert self.lease is not None
        lease = self.lease
        row_seen = False
        while not self._stopping:
            started = self.monotonic()
            try:
                if not row_seen:
                    await asyncio.to_thread(lease.ensure_row)
                    row_seen = True
                await self.step(lease, started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database is away: try again
                log.warning("lease attempt failed: %s", exc)
            if self.term is not None and not self.is_leader:
                await self._lose("renew deadline passed")
            await asyncio.sleep(self._next_attempt_in(lease, self.monotonic() - started))

    def _next_attempt_in(self, lease: Lease, elapsed: float) -> float:
        """Every renew interval; a follower tries again just after the lease it saw expires
        (database clock), so a dead leader is replaced within the TTL, not TTL + retry."""
        delay = self.renew - elapsed
        if self.term is None and lease.expires_in is not None:
            delay = min(delay, lease.expires_in - elapsed + TAKEOVER_MARGIN_S)
        return max(0.0, delay)

    async def step(self, lease: Lease, started: float) -> None:
        """One attempt: renew when leading, else try to acquire. `started` is when the
        attempt began, so the deadline counts the round trip against the leader."""
        if self.term is not None:
            if await asyncio.to_thread(lease.renew, self.term):
                self.valid_until = started + self.deadline
            else:
                await self._lose("lease renewal refused")
            return
        term = await asyncio.to_thread(lease.acquire)
        if term is None:
            return
        self.term = term
        self.valid_until = None  # not acting until the state is reloaded
        try:
            await self.on_elected(term)
        except Exception:
            self.term = None
            raise
        self.valid_until = started + self.deadline
        log.info("leading at term %d", term)

    async def _lose(self, why: str) -> None:
        term = self.term
        self.term, self.valid_until = None, None
        if term is not None:
            log.warning("stopped leading (term %d): %s", term, why)
            await self.on_lost(term)


def holder_id(port: int) -> str:
    """Who this monitor is in the lease: host, dashboard port and process."""
    return f"{socket.gethostname()}:{port}:{os.getpid()}"


def leadership_for(store: Store, settings: Settings, audit_key: bytes) -> Leadership:
    """A lease on PostgreSQL (several monitors may share it), a single leader on SQLite."""
    if not settings.shared_database:
        return Leadership.single()
    lease = Lease(store, holder_id(settings.port), ttl=settings.lease_ttl, audit_key=audit_key)
    return Leadership(lease, ttl=settings.lease_ttl, renew=settings.lease_renew_s())


def idle_in_transaction_ms(settings: Settings) -> int:
    """A monitor paused inside a transaction must not hold locks past half a lease."""
    return int(settings.lease_ttl * 500) if settings.shared_database else 0
