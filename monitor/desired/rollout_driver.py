"""The I/O shell around the rollout state machine: measure, advance, persist, audit, route.

Only the leader drives (the runtime gates `tick`). Every `tick` (a few times a second):

1. a failover since the rollout's last step (the engine's epoch moved) aborts it first;
2. once an analysis interval has passed, the window's measurement (gateway outcomes of the
   canary, its probe failures, probe p99 of both) is analysed and the verdict audited as
   `rollout.analysis` with the measurement in its details;
3. the pure machine (`monitor.desired.rollout.advance`) moves on, and its events become audit
   rows (`rollout.step`, `.pause`, `.complete`, `.abort`, ...) written in ONE transaction
   with the persisted rollout, so a restarted monitor resumes from the persisted step.

A decision takes effect in memory at once (the gateway's weights follow within 0.1 s); its
rows are written in order, and kept and retried when the database refuses them. Completion
switches the active version to the canary through the engine (an audited manual switch);
an abort after a BlueGreen switch, inside `scaleDownDelaySeconds`, switches straight back.
Operator actions (`act`) go through the same path, refused ones audited as refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from monitor.actor import SYSTEM, Actor
from monitor.desired import rollout as ro
from monitor.desired import rollout_plan as plan
from monitor.desired.rollout import (
    Kind,
    Measurement,
    Phase,
    Rollout,
    RolloutError,
    RolloutEvent,
)
from monitor.desired.rollout_plan import Op, Window
from monitor.desired.rollout_record import Rows, commit, row
from monitor.desired.service import DesiredService
from monitor.desired.spec import Analysis, ServiceSpec
from monitor.failover import engine
from monitor.failover.health import shown_state
from monitor.failover.model import UP
from monitor.failover.operations import ActionResult
from monitor.failover.watchdog import Watchdog
from monitor.storage import audit, rollouts
from monitor.storage.lease import Fenced
from monitor.storage.store import Store

log = logging.getLogger(__name__)
TICK_S = 0.1
DEFAULT_SERVICE = "books"  # the service's name without a spec
ROLLOUT_ACTOR = "rollout"


class RolloutDriver:
    def __init__(self, *, store: Store, audit_key: bytes, watchdog: Watchdog,
                 desired: DesiredService, clock: Callable[[], float]) -> None:
        self.service = desired.spec.name if desired.spec is not None else DEFAULT_SERVICE
        self.store, self.audit_key = store, audit_key
        self.watchdog, self.desired, self.clock = watchdog, desired, clock
        self.rollout: Rollout | None = None
        self.analysis = Analysis()
        self.epoch = 0  # the engine's epoch the rollout expects; a move means a failover
        self.window = Window(started=clock())
        self._seen_probes: dict[str, float] = {}
        self._backlog: list[Rows] = []
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[ActionResult]] = set()
        desired.on_new_leader = self.start_from_spec  # an apply that puts another version first
        self.load()

    # Reading ----------------------------------------------------------------------------
    def load(self) -> None:
        """Blocking, when built and on a leader change: the persisted rollout (a restart
        resumes from its step)."""
        record = rollouts.load(self.store, self.service)
        if record is None:
            return
        self.rollout = ro.from_record(record["rollout"])
        self.analysis = Analysis.model_validate(record.get("analysis", {}))
        self.epoch = int(record["epoch"])
        self.window.reset(self.clock())
        self._apply_targets()

    async def reload(self) -> None:
        """A new leader, or a follower showing the leader's rollout."""
        async with self._lock:
            await asyncio.to_thread(self.load)

    def weights(self) -> dict[str, int]:
        return plan.weights(self.rollout)

    def view(self) -> dict[str, Any] | None:
        return plan.view(self.rollout, audit.utc_iso)

    # What the gateway and the probes report ---------------------------------------------
    def observe_counts(self, counts: list[tuple[str, str, int]]) -> None:
        self.window.count(counts)

    def observe_failure(self, version: str) -> None:
        self.window.fail(version)

    def _sample_probes(self) -> None:
        for version, result in list(self.watchdog.last.items()):
            if self._seen_probes.get(version) != result.at:
                self._seen_probes[version] = result.at
                if result.at >= self.window.started:
                    self.window.probe(version, result.ok, result.latency_ms)

    # Driving ----------------------------------------------------------------------------
    async def tick(self) -> None:
        async with self._lock:
            await self._flush()
            self._sample_probes()
            rollout, now = self.rollout, self.clock()
            self._apply_targets()
            if rollout is None or rollout.done:
                return
            state = self.watchdog.state
            if state.epoch != self.epoch:
                reason = f"failover during the rollout: {state.active} active at epoch " \
                         f"{state.epoch}"
                await self._step(SYSTEM, *ro.abort(rollout, reason, now, evidence={
                    "active": state.active, "epoch": state.epoch, "expected": self.epoch}))
                return
            seen = None
            if now - self.window.started >= self.analysis.interval_seconds:
                seen = self.window.measurement(rollout.canary, rollout.stable,
                                               ready=self._ready(rollout))
                self.window.reset(now)
            new, events = ro.advance(rollout, seen, self.analysis, now)
            await self._step(SYSTEM, new, events, seen=seen)

    def _ready(self, rollout: Rollout) -> bool:
        """The canary is UP, and (managed) runs its target count of ready replicas."""
        policy, now = self.watchdog.policy, self.clock()
        if shown_state(self.watchdog.state.health_of(rollout.canary), policy, now) != UP:
            return False
        controller = self.desired.controller
        if controller is None or not self.desired.manages(rollout.canary):
            return True
        return len(controller.endpoints(rollout.canary)) >= max(1, controller.wanted(
            rollout.canary))

    def _apply_targets(self) -> None:
        controller, spec = self.desired.controller, self.desired.spec
        if controller is None or spec is None:
            return
        counts = {v.name: spec.spec.replicas_of(v) for v in spec.spec.versions}
        controller.overrides = plan.replica_targets(self.rollout, counts, self.clock())

    # Operator actions -------------------------------------------------------------------
    async def act(self, actor: Actor, op: str, params: dict[str, Any]) -> ActionResult:
        async with self._lock:
            now = self.clock()
            action = f"rollout.{op}" if op in set(Op) else "rollout.unknown"
            try:
                new, events = self._operate(op, params, now)
            except (RolloutError, ValueError) as exc:
                await self._write(Rows(actor, [row(action, str(params.get("target", "")),
                                                     params, "refused", str(exc))],
                                        self._record()))
                return ActionResult(False, f"rollout: {exc}")
            if op == Op.START:
                self.epoch = self.watchdog.state.epoch
                self.window.reset(now)
            await self._step(actor, new, events, params=params)
            return ActionResult(True, "; ".join(e.reason or str(e.kind) for e in events)
                                or f"rollout {op}")

    def start_from_spec(self, leader: str, spec: ServiceSpec, revision: int | None) -> None:
        """A spec revision names a new leader: start a rollout to it (the next tick)."""
        task = asyncio.get_running_loop().create_task(self.act(
            SYSTEM, Op.START, {"target": leader, "reason": f"spec revision {revision} puts "
                                                           f"{leader} first"}))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _operate(self, op: str, params: dict[str, Any],
                 now: float) -> tuple[Rollout, list[RolloutEvent]]:
        rollout = self.rollout
        if op == Op.START:
            return self._start(params, now)
        if op not in set(Op):
            raise RolloutError(f"unknown action {op!r}; one of {', '.join(Op)}")
        if rollout is None:
            raise RolloutError("no rollout to act on")
        reason = str(params.get("reason", "")).strip()
        if op == Op.PROMOTE:
            return ro.promote(rollout, now)
        if op == Op.PAUSE:
            return ro.pause(rollout, now, reason)
        if op == Op.RESUME:
            return ro.resume(rollout, now)
        return ro.abort(rollout, f"aborted by an operator: {reason or 'no reason given'}", now)

    def _start(self, params: dict[str, Any],
               now: float) -> tuple[Rollout, list[RolloutEvent]]:
        if self.rollout is not None and not self.rollout.done:
            raise RolloutError(f"a rollout to {self.rollout.canary} is {self.rollout.phase}; "
                               "abort it first")
        target = str(params.get("target", ""))
        if target not in self.watchdog.policy.versions:
            raise RolloutError(f"unknown version {target!r}; one of "
                               f"{', '.join(self.watchdog.policy.versions)}")
        spec = self.desired.spec.spec.rollout if self.desired.spec is not None else None
        strategy = plan.strategy_named(params.get("strategy") or None, spec)
        self.analysis = spec.analysis if spec is not None else Analysis()
        return ro.start(strategy, self.watchdog.state.active, target,
                        plan.steps_for(strategy, spec), now,
                        scale_down_delay=spec.scale_down_delay_seconds if spec else 30.0)

    # One step: memory at once, then rows and the record in one transaction --------------
    async def _step(self, actor: Actor, new: Rollout, events: list[RolloutEvent], *,
                    seen: Measurement | None = None,
                    params: dict[str, Any] | None = None) -> None:
        old, self.rollout = self.rollout, new
        if any(e.kind == Kind.WEIGHT for e in events):
            self.window.reset(self.clock())  # each weight is measured on its own interval
        rows = []
        if seen is not None:
            verdict = ro.analyse(seen, self.analysis)
            rows.append(row("rollout.analysis", new.canary, {
                "step": old.step if old else 0, "weight": old.weight if old else 0,
                "ok": verdict.ok, "reasons": list(verdict.reasons),
                "measurement": asdict(seen), "interval_s": self.analysis.interval_seconds},
                "ok" if verdict.ok else "failed", "; ".join(verdict.reasons),
                evidence=[asdict(seen)]))
        for event in events:
            rows.append(row(plan.ACTIONS[event.kind], new.canary, {
                **(params or {}), "strategy": str(new.strategy), "from": new.stable,
                "to": new.canary, "step": event.step, "weight": event.weight,
                "state": str(new.phase)}, "ok", event.reason,
                evidence=[event.evidence] if event.evidence else None))
        if not events and old is not None and old.step != new.step:
            rows.append(row("rollout.step", new.canary, {
                "step": new.step, "weight": new.weight, "state": str(new.phase)}, "ok",
                f"step {new.step + 1} of {len(new.steps)}"))
        if new != old or rows:
            notices = [(f"Rollout {new.stable} -> {new.canary} {e.kind}: {e.reason}"[:200],
                        {"from": new.stable, "to": new.canary, "reason": e.reason,
                         "evidence": e.evidence, "strategy": str(new.strategy)})
                       for e in events if e.kind in plan.NOTIFIED]
            await self._write(Rows(actor, rows, self._record(), notices))
        for event in events:
            if event.kind == Kind.COMPLETED:
                await self._switch(new.canary, f"rollout completed: {event.reason}")
            elif event.kind == Kind.ABORTED and self.watchdog.state.active == new.canary \
                    and old is not None and old.phase == Phase.COMPLETED:
                await self._switch(new.stable, f"rollout aborted: {event.reason}")
        self._apply_targets()

    async def _switch(self, target: str, reason: str) -> None:
        actor = Actor(ROLLOUT_ACTOR, "system")
        ok, message = await self.watchdog.act(
            lambda state, now: engine.manual_failover(
                state, target, self.watchdog.policy, now, reason=reason, force=True,
                actor=ROLLOUT_ACTOR),
            actor=actor, action="failover.manual", target=target, reason=reason)
        self.epoch = self.watchdog.state.epoch
        if not ok:
            log.error("rollout switch to %s refused: %s", target, message)

    def _record(self) -> dict[str, Any]:
        return {"rollout": ro.to_record(self.rollout) if self.rollout else None,
                "analysis": self.analysis.model_dump(by_alias=True), "epoch": self.epoch}

    async def _write(self, rows: Rows) -> None:
        self._backlog.append(rows)
        await self._flush()

    async def _flush(self) -> None:
        """Write the waiting transactions in order; keep them while the database refuses."""
        while self._backlog:
            try:
                await asyncio.to_thread(partial(commit, self.store, self.audit_key, self.service,
                                                 self._backlog[0], self.clock()))
            except Fenced as exc:
                log.info("rollout rows not written, another monitor leads: %s", exc)
                self._backlog.clear()
                return
            except Exception:  # noqa: BLE001 - kept in order and retried on the next tick
                log.exception("rollout rows not written yet (%d waiting)", len(self._backlog))
                return
            self._backlog.pop(0)

