"""Audit rows (and their notices) for actions that are not engine decisions: operator clicks,
denials, chaos, supervisor events, start and stop. Each in its own write transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from monitor.actor import Actor
from monitor.notices import delivery
from monitor.storage import audit
from monitor.storage.store import Store

Notice = tuple[str, str, dict[str, Any]]  # kind, subject, payload
ACTING = ("chaos.",)  # rows of acting writes: refused (lease.Fenced) unless this monitor leads


class Recorder:
    def __init__(self, store: Store, audit_key: bytes, clock: Callable[[], float]) -> None:
        self.store, self.audit_key, self.clock = store, audit_key, clock

    def record(self, actor: Actor, action: str, *, target: str = "",
               params: dict[str, Any] | None = None, outcome: str = "ok", reason: str = "",
               evidence: list[Any] | None = None, notice: Notice | None = None) -> None:
        """One audit row (and optionally one notice) in its own write transaction."""
        now = self.clock()
        with self.store.write(fenced=action.startswith(ACTING)) as session:
            audit.append(session, self.audit_key, now=now, action=action,
                         **actor.audit_fields(), target=target, params=params,
                         outcome=outcome, reason=reason, evidence=evidence)
            if notice:
                kind, subject, payload = notice
                delivery.enqueue(session, kind=kind, subject=subject, payload=payload, now=now)

    async def arecord(self, actor: Actor, action: str, *, target: str = "",
                      params: dict[str, Any] | None = None, outcome: str = "ok",
                      reason: str = "", evidence: list[Any] | None = None,
                      notice: Notice | None = None) -> None:
        """`record` on a worker thread, so the event loop never waits on the database."""
        await asyncio.to_thread(partial(self.record, actor, action, target=target,
                                        params=params, outcome=outcome, reason=reason,
                                        evidence=evidence, notice=notice))
