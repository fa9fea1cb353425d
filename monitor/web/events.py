"""Server-Sent Events for the live dashboard: the audit log, as it grows, is the event stream.

Every decision, operator action, replica action, scale event and rollout step is an audit row
already, so the stream sends audit rows (``id:`` = the row's ``seq``, ``event: audit``, the
row's action, target and outcome as JSON data) and the page refreshes what the row concerns.
This needs no event bus of its own, works the same on a follower reading a shared database,
and makes ``Last-Event-ID`` exact: a browser that reconnects gets the rows after the last one
it saw (at most ``REPLAY_LIMIT``; the page reloads its state anyway).

One poller per app watches the head of the log (one indexed query per ``poll_interval``) and
wakes the streams; each stream then reads only its own new rows. Streams are bounded per user
(``max_per_user``; one more is refused with 429) and end after ``max_age`` seconds so that a
browser reconnects and is authenticated again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from monitor.storage.store import AuditRow, Store

REPLAY_LIMIT = 200
HEARTBEAT_S = 15.0
SHOWN = ("seq", "ts", "actor", "action", "target", "outcome", "reason")


class TooManyStreams(Exception):
    """The user already holds `max_per_user` streams."""


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One SSE message; data is one JSON line (no newline can break the framing)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def row_event(row: AuditRow) -> bytes:
    return sse("audit", {k: getattr(row, k) for k in SHOWN}, row.seq)


class AuditStream:
    def __init__(self, store: Store, *, poll_interval: float = 0.5, max_per_user: int = 4,
                 max_age: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._poll_interval, self._max_per_user, self._max_age = (
            poll_interval, max_per_user, max_age)
        self._clock = clock
        self._head = 0
        self._changed = asyncio.Condition()
        self._open: Counter[str] = Counter()
        self._poller: asyncio.Task[None] | None = None

    # Lifecycle (the app's lifespan) -------------------------------------------------------
    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="sse-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    # Streams --------------------------------------------------------------------------------
    def open(self, user: str) -> None:
        """Reserve a stream for `user`, or raise TooManyStreams."""
        if self._open[user] >= self._max_per_user:
            raise TooManyStreams(f"at most {self._max_per_user} event streams per user")
        self._open[user] += 1

    async def events(self, user: str, last_seen: int | None) -> AsyncIterator[bytes]:
        """The stream of one reserved connection (released when it ends)."""
        try:
            self.start()
            ends_at = self._clock() + self._max_age
            after = await self._start_point(last_seen)
            yield b"retry: 2000\n\n"
            while self._clock() < ends_at:
                rows = await asyncio.to_thread(self._rows_after, after)
                for row in rows:
                    yield row_event(row)
                    after = row.seq
                if len(rows) == REPLAY_LIMIT:
                    continue
                if not await self._wait(after, min(HEARTBEAT_S, ends_at - self._clock())):
                    yield b": keep-alive\n\n"
        finally:
            self._open[user] -= 1
            if self._open[user] <= 0:
                del self._open[user]

    def streams_of(self, user: str) -> int:
        return self._open[user]

    # Internals ------------------------------------------------------------------------------
    async def _start_point(self, last_seen: int | None) -> int:
        head = await asyncio.to_thread(self._read_head)
        if last_seen is None or last_seen > head:
            return head  # a new page: only what happens from now on
        return max(last_seen, head - REPLAY_LIMIT)

    async def _wait(self, after: int, timeout: float) -> bool:
        """Until the head moves past `after` (True) or `timeout` passes (False)."""
        if timeout <= 0:
            return False
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._head > after),
                                       timeout)
            except TimeoutError:
                return False
        return True

    async def _poll(self) -> None:
        while True:
            head = await asyncio.to_thread(self._read_head)
            if head != self._head:
                async with self._changed:
                    self._head = head
                    self._changed.notify_all()
            await asyncio.sleep(self._poll_interval)

    def _read_head(self) -> int:
        with self._store.read() as session:
            return int(session.exec(select(func.max(AuditRow.seq))).one() or 0)

    def _rows_after(self, after: int) -> list[AuditRow]:
        with self._store.read() as session:
            return list(session.exec(select(AuditRow).where(col(AuditRow.seq) > after)
                                     .order_by(col(AuditRow.seq)).limit(REPLAY_LIMIT)))
