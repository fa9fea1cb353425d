"""The shell around the engine: probe -> decide -> persist (state, probe row, audit, outbox).

The engine decides; the watchdog only moves data. Every decision is written in ONE transaction
with the state it produced, its audit rows and its notices, fenced by the leader's term. A probe
that decides nothing waits in a batch, written with the state at least every second
(`flush_probes`) or with the next decision, so probing costs no transaction of its own. While
the database refuses writes, decisions still take effect and their transactions wait, in order,
in the backlog (journaled, replayed at the next start). A write waits at most DECISION_BUSY_MS
for another writer's lock. All database work runs on one worker thread, so the event loop never
waits on the database and the watchdog's writes keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import httpx
from sqlalchemy.exc import IntegrityError

from monitor.actor import SYSTEM, Actor
from monitor.failover import engine, pending
from monitor.failover.backlog import Backlog, Queued
from monitor.failover.canary import Canary
from monitor.failover.health import shown_state
from monitor.failover.model import (
    EngineError,
    Event,
    Failure,
    MonitorState,
    Observation,
    Policy,
    from_record,
    initial_state,
    record_changed,
    to_record,
)
from monitor.failover.probe import ProbeResult, probe
from monitor.failover.recording import Enqueue, failover_label, write_decision, write_refusal
from monitor.ops.metrics import Metrics
from monitor.storage import audit
from monitor.storage.journal import Journal
from monitor.storage.lease import Fenced
from monitor.storage.store import DEFAULT_SERVICE, StaleEpoch, Store

log = logging.getLogger("monitor.failover.watchdog")
DECISION_BUSY_MS = 100  # the longest a decision's write waits for another writer's lock
Step = Callable[[MonitorState, float], tuple[MonitorState, list[Event]]]
T = TypeVar("T")


class Watchdog:
    def __init__(self, *, policy: Policy, urls: Mapping[str, str], store: Store, audit_key: bytes,
                 client: httpx.AsyncClient, clock: Callable[[], float], canary: Canary,
                 timeout: float, slow_ms: float = 0.0, enqueue: Enqueue | None = None,
                 metrics: Metrics | None = None, journal: Journal | None = None,
                 service: str = DEFAULT_SERVICE) -> None:
        self.policy, self.urls, self.store, self.service = policy, urls, store, service
        self.audit_key, self.client, self.clock = audit_key, client, clock
        self.canary, self.timeout, self.slow_ms = canary, timeout, slow_ms
        self.enqueue, self.metrics, self.journal = enqueue, metrics, journal
        self.state: MonitorState  # set by load()
        self.last: dict[str, ProbeResult] = {}
        self.faults: dict[str, dict[str, Any]] = {}  # last known injected faults per version
        self.hurry: set[str] = set()
        self.on_hurry: Callable[[str], None] = lambda version: None
        self.replica_gate: Callable[[ProbeResult], ProbeResult] = lambda seen: seen  # minReady
        self._lock = asyncio.Lock()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watchdog-db")
        self._passive_at: dict[str, float] = {}
        self._backlog = Backlog(journal, metrics)  # writes not yet committed, oldest first
        self.batch: list[ProbeResult] = []  # probe rows that decided nothing, not yet written

    # Lifecycle ----------------------------------------------------------------------------
    def load(self) -> MonitorState:
        """Replay the journal, then resume the persisted state (or the last journaled one
        while the database still refuses it), or create and persist the first one."""
        now = self.clock()
        replay = partial(pending.replay, policy=self.policy, write=self._write,
                         write_refusal=self._write_refusal)
        journaled = self._backlog.replay(replay)
        record = journaled or self.store.load_state(self.service)
        if record is None:
            state = initial_state(self.policy, now)
            try:
                with self.store.write() as session:
                    self.store.save_state(session, to_record(state), expected_epoch=None,
                                          now=now, service=self.service)
                    audit.append(session, self.audit_key, now=now, target=state.active,
                                 action="monitor.state_created", **SYSTEM.audit_fields(),
                                 params={"epoch": state.epoch, "service": self.service})
            except (StaleEpoch, IntegrityError):  # another monitor created it first
                return self.load()
        else:
            state = from_record(record, self.policy, now)
        self.state = state
        self._set_active_metric()
        return state

    async def reload(self, read: Callable[[], MonitorState | None]) -> None:
        """Adopt the state another monitor wrote (`read` runs on the database thread; see
        monitor.ops.leadership.shared_state)."""
        async with self._lock:
            if (state := await self._run(read)) is not None:
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
        result = self.replica_gate(await probe(
            self.client, version, self.urls[version], now=self.clock(), timeout=self.timeout,
            canary=self.canary, slow_ms=self.slow_ms))
        self.last[version] = result
        if result.faults is not None:
            self.faults[version] = result.faults
        if self.metrics:
            self.metrics.probe(version, result.ok, result.failure, result.latency_ms)
        await self.observe(result.observation(), row=result)
        if self.metrics:
            shown = shown_state(self.state.health_of(version), self.policy, self.clock())
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

    async def report_exit(self, version: str, detail: str) -> list[Event]:
        """Every ready replica of `version` exited: certain evidence, DOWN at once (the
        failover still waits for its confirming probe of the target)."""
        if version not in self.urls:
            return []
        seen = Observation(version=version, ok=False, at=self.clock(), failure=Failure.EXITED,
                           detail=detail[:200], certain=True)
        return await self.observe(seen)

    def expedite(self, version: str) -> None:
        self.hurry.add(version)
        self.on_hurry(version)

    # Operator actions ---------------------------------------------------------------------
    async def act(self, step: Step, *, actor: Actor, action: str, target: str = "",
                  params: dict[str, Any] | None = None,
                  reason: str = "") -> tuple[bool, str]:
        """Apply a manual engine step; a refusal (EngineError) is audited as denied."""
        async with self._lock:
            now = self.clock()
            try:
                new, events = step(self.state, now)
            except EngineError as exc:
                why = str(exc)
                try:
                    await self._persist(partial(self._write_refusal, actor, action, target,
                                                params, reason, why, now), droppable=False,
                                        entry=partial(pending.refusal_entry, actor, action,
                                                      target, params, reason, why, now))
                except Fenced:
                    return False, "this monitor no longer leads; nothing changed"
                return False, str(exc)
            if not await self._commit(new, events, now, actor=actor, params=params):
                return False, "the state changed meanwhile; nothing changed, try again"
        self._after(events)
        return True, "; ".join(e.reason or e.kind for e in events) or "done"

    # Persistence --------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _commit(self, new: MonitorState, events: list[Event], now: float, *,
                      row: ProbeResult | None = None, actor: Actor | None = None,
                      params: dict[str, Any] | None = None) -> bool:
        """Persist a decision, then let it take effect; False only when another writer moved
        the state on (the decision is void and the state is reloaded)."""
        if row is not None and not events and actor is None and \
                not record_changed(self.state, new):
            self.batch.append(row)  # written by flush_probes or with the next decision
            self.state = new
            return True
        rows, self.batch = [*self.batch, *([row] if row else [])], []
        job = partial(self._write, self.state, new, events, now, rows, actor, params)
        entry = partial(pending.decision_entry, self.state, new, events, now, rows, actor, params)
        try:
            await self._persist(job, droppable=not events and not actor, entry=entry)
        except asyncio.CancelledError:
            self.state = new  # written or queued: either way the decision stands
            raise
        except Fenced as exc:
            log.warning("decision not written: %s", exc)
            return False
        except StaleEpoch as exc:
            log.warning("state changed elsewhere (%s); reloading", exc)
            record = await self._run(self.store.load_state, self.service)
            self.state = from_record(record or {}, self.policy, now)
            return False
        self.state = new
        return True

    def _submit(self, job: Callable[[], None], *, droppable: bool,
                entry: Callable[[], dict[str, Any]] | None = None) -> asyncio.Future[None]:
        """Queue `job` on the database thread, after every earlier write still queued."""
        return asyncio.get_running_loop().run_in_executor(
            self._db, self._backlog.drain, Queued(job, droppable, entry))

    async def _persist(self, job: Callable[[], None], *, droppable: bool,
                       entry: Callable[[], dict[str, Any]] | None = None) -> None:
        """Run `job` on the database thread after every earlier write still queued."""
        write = self._submit(job, droppable=droppable, entry=entry)
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            # Shutdown cancelled the caller: the thread still finishes the write first.
            with contextlib.suppress(Exception):
                await write
            raise

    async def flush_probes(self) -> None:
        """Write the batched probe rows in one transaction. The lock is held while the write
        is queued (so it keeps its place among the decisions), not while it runs: probes go
        on deciding meanwhile. The rows moved no persisted state (see _commit)."""
        async with self._lock:
            if not self.batch:
                return
            rows, self.batch, state, now = self.batch, [], self.state, self.clock()
            decision: tuple[Any, ...] = (state, state, [], now, rows, None, None)
            write = self._submit(partial(self._write, *decision), droppable=True,
                                 entry=partial(pending.decision_entry, *decision))
        try:
            await asyncio.shield(write)
        except Fenced as exc:
            log.warning("probe rows not written: %s", exc)

    async def flush(self) -> int:
        """Write the probe batch, retry what the database refused; returns what is queued."""
        await self.flush_probes()
        await self._run(self._backlog.drain, None)
        return len(self._backlog)

    def _write(self, *decision: Any,
               records: tuple[dict[str, Any], dict[str, Any]] | None = None) -> None:
        """decision: (old, new, events, now, rows, actor, params); see write_decision."""
        write_decision(self.store, self.audit_key, self.enqueue, DECISION_BUSY_MS, *decision,
                       records=records, service=self.service)

    def _write_refusal(self, *refusal: Any) -> None:  # (actor, action, target, params, ...)
        write_refusal(self.store, self.audit_key, DECISION_BUSY_MS, *refusal, service=self.service)

    def _after(self, events: list[Event]) -> None:
        for version in engine.wants_probe_now(events):
            self.expedite(version)
        if self.metrics and events:  # without an event neither the active nor the incident moved
            for event in events:
                if label := failover_label(event):
                    self.metrics.failover(label)
            self._set_active_metric()

    def _set_active_metric(self) -> None:
        if self.metrics and self.state is not None:
            self.metrics.set_active(self.state.active, self.policy.versions)
            self.metrics.set_open_incidents(1 if self.state.incident else 0)
