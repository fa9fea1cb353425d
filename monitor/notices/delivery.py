"""Incident notices: the outbox, and the job that delivers it by email.

Life of a notice (column `status`):

    pending --claim--> sending --250--> sent
       ^                  |  \\--5xx for this message, or a malformed one--> failed
       +--retry later-----+   (network, TLS, login, 4xx: back-off with full jitter)
    any open notice older than MONITOR_NOTIFY_GIVE_UP_AFTER --> failed ("gave up ...")
    without SMTP configured: pending/sending --> unsent ("not sent: SMTP not configured")

- `enqueue` writes the row inside the caller's transaction, so a notice exists exactly when the
  event that caused it was committed.
- Grouping: the job waits until the oldest waiting notice is `notify_group_window` seconds old,
  then claims every waiting notice into one batch (one email, at most MAX_PER_EMAIL notices). The
  batch id and status "sending" are committed BEFORE the SMTP call; the email's Message-ID is the
  first notice's `message_id`. A batch is never regrouped, so a retry after an error or a crash
  sends the same email with the same Message-ID and the receiver can deduplicate.
- A claimed batch is leased for `2 * smtp_timeout + 10` seconds: a batch left in "sending" by a
  process that died is retried once the lease has passed.
- Several monitors (PostgreSQL): only the leader delivers. A claim is a fenced write (refused
  once another monitor leads) and locks its rows `FOR UPDATE SKIP LOCKED`, so two claimers
  never take the same notice; just before the SMTP call the leader checks it still leads
  (`may_send`), so a paused-then-resumed old leader sends nothing. A new leader resends a batch
  left "sending" with its Message-ID once the claim lease has passed.
- "unsent" is not final: when SMTP is configured later, unsent notices are delivered (or, if
  older than the give-up age, marked failed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import ColumnElement, func, update
from sqlmodel import Session, col, select

from monitor.config import Settings
from monitor.notices.outbox import (
    KINDS,
    NOT_CONFIGURED,
    OPEN,
    STATUSES,
    counts,
    enqueue,
    message_domain,
    recent,
)
from monitor.notices.render import Item, Rendered, render, utc_text
from monitor.notices.smtp import NotifyError, SmtpTransport, compose
from monitor.storage.lease import Fenced
from monitor.storage.store import Incident, Notice, NoticeAttempt, Store

__all__ = ["KINDS", "STATUSES", "NOT_CONFIGURED", "NotifyError", "Notifier", "backoff", "counts",
           "enqueue", "recent", "send_test"]

log = logging.getLogger("monitor.notices.delivery")

BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 600.0
MAX_PER_EMAIL = 50
MAX_BATCHES_PER_RUN = 10


class Transport(Protocol):
    def send(self, message: EmailMessage) -> str: ...


def backoff(attempts: int, rng: random.Random) -> float:
    """Seconds before retry number `attempts + 1`: full jitter, `U(0, min(cap, base * 2^(n-1)))`."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, min(attempts - 1, 30)))
    return rng.uniform(0, ceiling)


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def item(notice: Notice) -> Item:
    try:
        payload = json.loads(notice.payload)
    except ValueError:
        payload = {"payload": notice.payload}
    return Item(kind=notice.kind, subject=notice.subject, payload=payload,
                created_at=notice.created_at, message_id=notice.message_id,
                incident_id=notice.incident_id)


class Notifier:
    """The delivery job and the reminder job; blocking work runs in a worker thread.

    With neither `transport` nor MONITOR_SMTP_HOST, SMTP counts as not configured: notices
    become "unsent" (visible, not failed) and no reminders are queued.
    """

    def __init__(self, settings: Settings, store: Store, *, transport: Transport | None = None,
                 clock: Callable[[], float] = time.time,
                 render: Callable[..., Rendered] = render,
                 rng: random.Random | None = None,
                 may_send: Callable[[], bool] = lambda: True) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport if transport is not None else (
            SmtpTransport(settings) if settings.smtp_host else None)
        self.clock = clock
        self.render = render
        self.rng = rng or random.Random()
        self.lease = 2 * settings.smtp_timeout + 10
        self.may_send = may_send
        self._busy = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.transport is not None

    async def deliver_due(self) -> int:
        """Send what is due; returns how many notices were delivered in this run."""
        return await asyncio.to_thread(self.deliver_due_sync)

    async def remind(self) -> int:
        """Queue a reminder for each open incident due one; returns how many were queued."""
        return await asyncio.to_thread(self.remind_sync)

    # Delivery -----------------------------------------------------------------------------
    def deliver_due_sync(self) -> int:
        if not self._busy.acquire(blocking=False):
            return 0  # a previous run is still sending; it will pick up whatever is due
        try:
            if not self._anything_due(self.clock()):
                return 0
            if not self.configured:
                self._mark_unconfigured()
                return 0
            delivered = 0
            for _ in range(MAX_BATCHES_PER_RUN):
                try:
                    batch = self._claim(self.clock())
                except Fenced as exc:
                    log.info("notices not claimed: %s", exc)
                    break
                if not batch:
                    break
                error = self._send(batch)
                if error is None:
                    delivered += len(batch)
                elif not error.permanent:
                    break  # the server is unreachable for every batch alike; wait for back-off
            return delivered
        finally:
            self._busy.release()

    def _anything_due(self, now: float) -> bool:
        """A cheap read, so an idle or backing-off outbox never takes the write lock."""
        where: ColumnElement[bool]
        if not self.configured:
            where = col(Notice.status).in_(("pending", "sending"))
        else:
            where = col(Notice.status).in_(OPEN) & (
                col(Notice.batch_id).is_(None) | (col(Notice.next_attempt_at) <= now)
                | (col(Notice.created_at) <= now - self.settings.notify_give_up_after))
        with self.store.read() as session:
            return session.exec(select(col(Notice.id)).where(where).limit(1)).first() is not None

    def _mark_unconfigured(self) -> None:
        with self.store.write() as session:
            session.execute(update(Notice).where(col(Notice.status).in_(("pending", "sending")))
                            .values(status="unsent", last_error=NOT_CONFIGURED))

    def _claim(self, now: float) -> list[Notice]:
        """Pick one batch (a retry first, else a new group) and commit it as "sending"."""
        with self.store.write(fenced=True) as session:
            self._give_up(session, now)
            batch = self._due_batch(session, now) or self._new_batch(session, now)
            for notice in batch:
                notice.status = "sending"
                notice.next_attempt_at = now + self.lease
                session.add(notice)
            return batch

    def _give_up(self, session: Session, now: float) -> None:
        cutoff = now - self.settings.notify_give_up_after
        old = list(session.exec(select(Notice).where(col(Notice.status).in_(OPEN),
                                                     col(Notice.created_at) <= cutoff)))
        batch_ids = {n.batch_id for n in old if n.batch_id}
        if batch_ids:  # a batch gives up as a whole, so no member is sent without the others
            old += session.exec(select(Notice).where(col(Notice.batch_id).in_(batch_ids),
                                                     col(Notice.status).in_(OPEN),
                                                     col(Notice.created_at) > cutoff))
        after = duration(self.settings.notify_give_up_after)
        for notice in old:
            notice.status = "failed"
            notice.last_error = f"gave up after {after}: {notice.last_error or 'never attempted'}"
            session.add(notice)

    def _due_batch(self, session: Session, now: float) -> list[Notice]:
        first = session.exec(
            select(Notice).where(col(Notice.batch_id).is_not(None), col(Notice.status).in_(OPEN),
                                 col(Notice.next_attempt_at) <= now)
            .order_by(col(Notice.next_attempt_at), col(Notice.id)).limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if first is None:
            return []
        return list(session.exec(
            select(Notice).where(col(Notice.batch_id) == first.batch_id,
                                 col(Notice.status).in_(OPEN))
            .order_by(col(Notice.created_at), col(Notice.id)).with_for_update(skip_locked=True)
        ))

    def _new_batch(self, session: Session, now: float) -> list[Notice]:
        waiting = list(session.exec(
            select(Notice).where(col(Notice.batch_id).is_(None),
                                 col(Notice.status).in_(("pending", "unsent")),
                                 col(Notice.created_at) <= now)
            .order_by(col(Notice.created_at), col(Notice.id)).limit(MAX_PER_EMAIL)
            .with_for_update(skip_locked=True)
        ))
        if not waiting or now - waiting[0].created_at < self.settings.notify_group_window:
            return []
        batch_id = uuid.uuid4().hex
        for notice in waiting:
            notice.batch_id = batch_id
        return waiting

    def _send(self, batch: list[Notice]) -> NotifyError | None:
        first = batch[0]
        if not self.may_send():  # lost the lead since the claim: the new leader resends it
            return NotifyError("not sent: this monitor no longer leads", permanent=False)
        now = self.clock()
        try:
            rendered = self.render([item(n) for n in batch],
                                   dashboard_url=self.settings.dashboard_url())
            message = compose(sender=self.settings.smtp_from,
                              recipients=self.settings.smtp_recipients(),
                              subject=rendered.subject, message_id=first.message_id, date=now,
                              text=rendered.text, html=rendered.html)
            assert self.transport is not None  # only called when configured
            reply = self.transport.send(message)
        except NotifyError as exc:
            error: NotifyError | None = exc
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the outbox; retried
            log.exception("notice batch %s: unexpected error", first.message_id)
            error = NotifyError(f"unexpected error: {exc!r}", permanent=False)
        else:
            error = None
            log.info("sent %d notice(s) as %s: %s", len(batch), first.message_id, reply)
        if error is not None:
            log.warning("notice batch %s not sent (%s): %s", first.message_id,
                        "permanent" if error.permanent else "will retry", error)
        done = self.clock()
        with self.store.write() as session:
            ids = [n.id for n in batch]
            rows = list(session.exec(select(Notice).where(col(Notice.id).in_(ids))))
            retry_at = done + backoff(max((n.attempts for n in rows), default=0) + 1, self.rng)
            for notice in rows:
                self._record(session, notice, done, error, retry_at=retry_at)
        return error

    @staticmethod
    def _record(session: Session, notice: Notice, now: float, error: NotifyError | None,
                *, retry_at: float = 0.0) -> None:
        notice.attempts += 1
        assert notice.id is not None  # a stored row
        session.add(NoticeAttempt(notice_id=notice.id, at=now, ok=error is None,
                                  error=str(error or "")))
        if error is None:
            notice.status, notice.sent_at, notice.last_error = "sent", now, ""
        elif error.permanent:
            notice.status, notice.last_error = "failed", str(error)
        else:
            notice.status, notice.next_attempt_at = "pending", retry_at
            notice.last_error = f"{error}; next try at {utc_text(retry_at)}"
        session.add(notice)

    # Reminders ----------------------------------------------------------------------------
    def remind_sync(self) -> int:
        every = self.settings.notify_remind_every
        if not self.configured or every <= 0:
            return 0
        now = self.clock()
        with self.store.read() as session:
            due = session.exec(select(col(Incident.id)).where(
                col(Incident.closed_at).is_(None),
                func.coalesce(col(Incident.last_reminder_at),
                              col(Incident.opened_at)) <= now - every,
            ).limit(1)).first()
        if due is None:
            return 0
        queued = 0
        with self.store.write() as session:
            for incident in session.exec(select(Incident).where(col(Incident.closed_at).is_(None))):
                if now - (incident.last_reminder_at or incident.opened_at) < every:
                    continue
                what = re.sub(r"[\r\n]+", " ", incident.summary or incident.kind)
                open_for = duration(now - incident.opened_at)
                enqueue(session, kind="reminder", subject=f"Still open: {what} (for {open_for})",
                        payload={"incident": incident.kind, "summary": incident.summary,
                                 "opened_at": utc_text(incident.opened_at), "open_for": open_for,
                                 "service": incident.service},
                        now=now, incident_id=incident.id, service=incident.service)
                incident.last_reminder_at = now
                session.add(incident)
                queued += 1
        return queued


def send_test(settings: Settings, *, transport: Transport | None = None,
              clock: Callable[[], float] = time.time) -> str:
    """Send a test email now (not through the outbox); returns the server's answer.

    Raises NotifyError with a printable message when SMTP is not configured or sending fails.
    """
    if transport is None:
        if not settings.smtp_host:
            raise NotifyError("SMTP not configured: set MONITOR_SMTP_HOST, MONITOR_SMTP_FROM "
                              "and MONITOR_SMTP_TO", permanent=True)
        transport = SmtpTransport(settings)
    now = clock()
    test = Item(kind="test", subject="Test notice", created_at=now,
                payload={"reason": "sent by `python -m monitor notify test`"})
    rendered = render([test], dashboard_url=settings.dashboard_url())
    message = compose(sender=settings.smtp_from, recipients=settings.smtp_recipients(),
                      subject=rendered.subject,
                      message_id=f"<test-{uuid.uuid4().hex}@{message_domain()}>", date=now,
                      text=rendered.text, html=rendered.html)
    return transport.send(message)
