"""The shell around the engine: probe -> decide -> persist (state, probe row, audit, outbox).

The engine decides; the watchdog only moves data. Every decision is written in ONE transaction
together with the state it produced, its audit rows and its notices. While the database refuses
writes (locked, full disk), decisions still take effect and their transactions wait in memory,
in order, until a write succeeds, so failover keeps working and no audit row is lost. All
database work runs on one worker thread, so the event loop never waits on SQLite and the
watchdog's writes keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from functools import partial
from typing import TypeVar

import httpx
from sqlalchemy.exc import IntegrityError

from monitor.failover import engine
from monitor.failover.engine import Event, MonitorState, Observation, Policy
from monitor.failover.probe import Canary, ProbeResult, probe
from monitor.storage import audit
from monitor.storage.lease import Fenced
from monitor.storage.store import Incident, ProbeRow, StaleEpoch, Store

log = logging.getLogger("monitor.failover.watchdog")
_T = TypeVar("_T")
MAX_BACKLOG = 100_000  # queued writes kept while the database refuses them
REPLAY_PROBES, REPLAY_ROWS = 4, 300  # recent probe rows folded into a reloaded state

AUDIT_ACTIONS = {
    "state_change": "version.state",
    "confirm": "failover.confirm",
    "switch": "failover.automatic",
    "suppressed": "failover.suppressed",
    "failover_impossible": "failover.impossible",
    "incident_opened": "incident.opened",
    "incident_closed": "incident.closed",
    "manual_switch": "failover.manual",
    "paused": "failover.pause",
    "resumed": "failover.resume",
}
NOTICE_KINDS = {
    "switch": "failover",
    "manual_switch": "failover",
    "suppressed": "suppressed",
    "failover_impossible": "failover_impossible",
    "incident_opened": "all_down",
    "incident_closed": "recovery",
}
Enqueue = Callable[..., object]  # notify.enqueue(session, *, kind, subject, payload, now, ...)


def evidence_of(event: Event) -> list[dict]:
    return [asdict(o) for o in event.evidence]


def notice_subject(event: Event) -> str:
    if event.kind in ("switch", "manual_switch"):
        return f"Failover {event.source} -> {event.target}: {event.reason}"
    if event.kind == "incident_opened":
        return "All versions down: serving from the last active version"
    if event.kind == "incident_closed":
        return "Recovered: the active version is up again"
    if event.kind == "suppressed":
        return f"Failover held back ({event.reason})"
    return f"Failover impossible: {event.reason}"


class Watchdog:
    def __init__(self, *, policy: Policy, urls: dict[str, str], store: Store, audit_key: bytes,
                 client: httpx.AsyncClient, clock: Callable[[], float], canary: Canary,
                 timeout: float, slow_ms: float = 0.0, enqueue: Enqueue | None = None,
                 metrics=None) -> None:
        self.policy, self.urls, self.store = policy, urls, store
        self.audit_key, self.client, self.clock = audit_key, client, clock
        self.canary, self.timeout, self.slow_ms = canary, timeout, slow_ms
        self.enqueue, self.metrics = enqueue, metrics
        self.state: MonitorState | None = None
        self.last: dict[str, ProbeResult] = {}
        self.faults: dict[str, dict] = {}  # last known injected faults per version
        self.hurry: set[str] = set()
        self.on_hurry: Callable[[str], None] = lambda version: None
        self._lock = asyncio.Lock()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watchdog-db")
        self._passive_at: dict[str, float] = {}
        self._backlog: list[tuple[Callable[[], None], bool]] = []  # writes not yet committed
        self._failing = False

    # Lifecycle ----------------------------------------------------------------------------
    def load(self) -> MonitorState:
        """Resume the persisted state, or create and persist the first one."""
        now = self.clock()
        record = self.store.load_state()
        if record is None:
            state = engine.initial_state(self.policy, now)
            try:
                with self.store.write() as session:
                    self.store.save_state(session, engine.to_record(state), expected_epoch=None,
                                          now=now)
                    audit.append(session, self.audit_key, now=now,
                                 action="monitor.state_created", target=state.active,
                                 params={"epoch": state.epoch})
            except (StaleEpoch, IntegrityError):  # another monitor created it first
                return self.load()
        else:
            state = engine.from_record(record, self.policy, now)
        self.state = state
        self._set_active_metric()
        return state

    async def reload(self, *, takeover: bool = False) -> None:
        """Read the state the leader wrote and fold in the latest probes it stored (a
        follower's view, or on becoming leader). A takeover is not a start: no startup grace,
        and streaks continue from the previous leader's probes."""
        async with self._lock:
            record = await self._run(self.store.load_state)
            if record is None:
                return
            now = self.clock()
            since = now - REPLAY_PROBES * self.policy.down_interval
            rows = await self._run(partial(self.store.probes, since=since, limit=REPLAY_ROWS))
            state = engine.replay(engine.from_record(record, self.policy, now), [
                Observation(version=r.version, ok=r.ok, at=r.at, latency_ms=r.latency_ms,
                            failure=r.failure, status=r.status, passive=r.passive)
                for r in reversed(rows)], self.policy)
            if takeover:
                state = replace(state, started_at=now - self.policy.startup_grace)
            self.state = state
            self._set_active_metric()

    def close(self) -> None:
        self._db.shutdown(wait=True)

    async def idle(self) -> None:
        """Wait until no decision is being written (for a clean shutdown)."""
        async with self._lock:
            return

    # Probing ------------------------------------------------------------------------------
    async def cycle(self, version: str) -> float:
        """Probe one version, fold the result in, and return the delay to its next probe."""
        self.hurry.discard(version)
        result = await probe(self.client, version, self.urls[version], now=self.clock(),
                             timeout=self.timeout, canary=self.canary, slow_ms=self.slow_ms)
        self.last[version] = result
        if result.faults is not None:
            self.faults[version] = result.faults
        if self.metrics:
            self.metrics.probe(version, result.ok, result.failure, result.latency_ms)
        await self.observe(result.observation(), row=result)
        if self.metrics:
            shown = engine.shown_state(self.state.health_of(version), self.policy, self.clock())
            self.metrics.set_version_state(version, shown)
        if version in self.hurry:
            return 0.0
        return engine.next_probe_delay(self.state, version, self.policy)

    async def observe(self, seen: Observation, *, row: ProbeResult | None = None) -> list[Event]:
        async with self._lock:
            now = self.clock()
            new, events = engine.decide(self.state, seen, self.policy, now)
            if not await self._commit(new, events, now, row=row):
                return []
        self._after(events)
        return events

    async def tick(self) -> list[Event]:
        """Time-driven decisions: cooldown end, grace end, auto failback, ejection decay."""
        async with self._lock:
            now = self.clock()
            new, events = engine.tick(self.state, self.policy, now)
            if (new == self.state and not events) or not await self._commit(new, events, now):
                return []
        self._after(events)
        return events

    def report_passive(self, version: str, failure: str) -> None:
        """A gateway failure: probe that version soon; never a failover on its own."""
        now = self.clock()
        if version not in self.urls or now - self._passive_at.get(version, 0.0) < \
                self.policy.fast_interval:
            return
        self._passive_at[version] = now
        self.expedite(version)

    def expedite(self, version: str) -> None:
        self.hurry.add(version)
        self.on_hurry(version)

    # Operator actions ---------------------------------------------------------------------
    async def act(self, step: Callable[[MonitorState, float], tuple[MonitorState, list[Event]]],
                  *, actor, action: str, target: str = "", params: dict | None = None,
                  reason: str = "") -> tuple[bool, str]:
        """Apply a manual engine step; a refusal (EngineError) is audited as denied."""
        async with self._lock:
            now = self.clock()
            try:
                new, events = step(self.state, now)
            except engine.EngineError as exc:
                try:
                    await self._persist(partial(self._write_refusal, actor, action, target,
                                                params, reason, str(exc), now), droppable=False)
                except Fenced:
                    return False, "this monitor no longer leads; nothing changed"
                return False, str(exc)
            if not await self._commit(new, events, now, actor=actor, params=params):
                return False, "the state changed meanwhile; nothing changed, try again"
        self._after(events)
        return True, "; ".join(e.reason or e.kind for e in events) or "done"

    # Persistence --------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _commit(self, new: MonitorState, events: list[Event], now: float, *,
                      row: ProbeResult | None = None, actor=None, params=None) -> bool:
        """Persist a decision, then let it take effect; False only when another writer moved
        the state on (the decision is void and the state is reloaded)."""
        job = partial(self._write, self.state, new, events, now, row, actor, params)
        try:
            await self._persist(job, droppable=row is not None and not events and not actor)
        except asyncio.CancelledError:
            self.state = new  # written or queued: either way the decision stands
            raise
        except Fenced as exc:
            log.warning("decision not written: %s", exc)
            return False
        except StaleEpoch as exc:
            log.warning("state changed elsewhere (%s); reloading", exc)
            record = await self._run(self.store.load_state)
            self.state = engine.from_record(record, self.policy, now)
            return False
        self.state = new
        return True

    async def _persist(self, job: Callable[[], None], *, droppable: bool) -> None:
        """Run `job` on the database thread after every earlier write still queued."""
        write = asyncio.get_running_loop().run_in_executor(self._db, self._drain, job, droppable)
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            # Shutdown cancelled the caller: the thread still finishes the write first.
            with contextlib.suppress(Exception):
                await write
            raise

    async def flush(self) -> int:
        """Try once more to write what the database refused; returns what is still queued."""
        await self._run(self._drain, None, False)
        return len(self._backlog)

    def _drain(self, job: Callable[[], None] | None, droppable: bool) -> None:
        """Database thread only. Writes queue up in order while the database refuses them
        (locked, full, gone), so the monitor keeps deciding and failing over and no audit row
        or notice is lost; they are written, oldest first, as soon as a write succeeds. When
        the queue is full, plain probe rows are dropped first, decisions never."""
        if job is not None:
            self._backlog.append((job, droppable))
            if len(self._backlog) > MAX_BACKLOG:
                plain = next((i for i, (_, d) in enumerate(self._backlog) if d), None)
                if plain is not None:
                    del self._backlog[plain]
        while self._backlog:
            try:
                self._backlog[0][0]()
            except (StaleEpoch, Fenced):
                # decisions built on a state that is no longer current, or by a monitor that
                # no longer leads: none of them may be written
                self._backlog.clear()
                raise
            except Exception as exc:  # noqa: BLE001 - any database failure: keep it queued
                if not self._failing:
                    log.error("database write failed (%s); keeping decisions in memory "
                              "until it can be written", exc)
                self._failing = True
                return
            self._backlog.pop(0)
        if self._failing:
            log.warning("database writable again; queued decisions written")
            self._failing = False

    def _write(self, old: MonitorState, new: MonitorState, events: list[Event], now: float,
               row: ProbeResult | None, actor, params: dict | None) -> None:
        with self.store.write(fenced=True) as session:
            if row is not None:
                session.add(ProbeRow(version=row.version, at=row.at, ok=row.ok,
                                     latency_ms=row.latency_ms, status=row.status,
                                     failure=row.failure, detail=row.detail[:500]))
            record = engine.to_record(new)
            if record != engine.to_record(old):
                self.store.save_state(session, record, expected_epoch=old.epoch,
                                      now=now)
            for event in events:
                self._write_event(session, event, new, now, actor, params)

    def _write_event(self, session, event: Event, state: MonitorState, now: float, actor,
                     params: dict | None) -> None:
        who = actor or _System
        audit.append(
            session, self.audit_key, now=now, action=AUDIT_ACTIONS.get(event.kind, event.kind),
            actor=who.name if actor else event.actor, role=who.role, source_ip=who.source_ip,
            user_agent=who.user_agent, request_id=who.request_id,
            target=event.target or event.version or "",
            params={**(params or {}), "epoch": state.epoch, "source": event.source},
            reason=event.reason, evidence=evidence_of(event))
        incident_id = self._track_incident(session, event, now)
        kind = NOTICE_KINDS.get(event.kind)
        if kind and self.enqueue and not (event.kind == "suppressed" and event.reason == "paused"):
            payload = {"event": event.kind, "source": event.source, "target": event.target,
                       "version": event.version, "reason": event.reason,
                       "actor": who.name if actor else event.actor, "active": state.active,
                       "epoch": state.epoch, "at": audit.utc_iso(now),
                       "evidence": evidence_of(event)}
            self.enqueue(session, kind=kind, subject=notice_subject(event), payload=payload,
                         now=now, incident_id=incident_id)

    @staticmethod
    def _track_incident(session, event: Event, now: float) -> int | None:
        from sqlmodel import select

        open_incident = session.exec(
            select(Incident).where(Incident.closed_at.is_(None))).first()
        if event.kind == "incident_opened" and open_incident is None:
            incident = Incident(kind="all_down", opened_at=now, summary=event.reason)
            session.add(incident)
            session.flush()
            return incident.id
        if event.kind == "incident_closed" and open_incident is not None:
            open_incident.closed_at = now
            session.add(open_incident)
            return open_incident.id
        return open_incident.id if open_incident else None

    def _write_refusal(self, actor, action, target, params, reason, why, now) -> None:
        with self.store.write(fenced=True) as session:
            audit.append(session, self.audit_key, now=now, action=action, actor=actor.name,
                         role=actor.role, source_ip=actor.source_ip,
                         user_agent=actor.user_agent, request_id=actor.request_id,
                         target=target, params={**(params or {}), "reason": reason},
                         outcome="refused", reason=why)

    def _after(self, events: list[Event]) -> None:
        for version in engine.wants_probe_now(events):
            self.expedite(version)
        if self.metrics:
            for event in events:
                if event.kind in ("switch", "manual_switch"):
                    self.metrics.failover(_failover_reason(event))
            self._set_active_metric()

    def _set_active_metric(self) -> None:
        if self.metrics and self.state is not None:
            self.metrics.set_active(self.state.active, self.policy.versions)
            self.metrics.set_open_incidents(1 if self.state.incident else 0)


def _failover_reason(event: Event) -> str:
    if event.kind == "manual_switch":
        return "forced" if "force" in event.reason else "manual"
    return "auto_failback" if "failback" in event.reason else "automatic"


class _System:
    name, role, source_ip, user_agent, request_id = "monitor", "system", "", "", ""
