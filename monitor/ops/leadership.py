"""What leading means for the running monitor: the runtime's hooks into the leader lease.

- Only the leader probes, decides, sends notices, writes checkpoints and rollups, and applies
  operator actions: `gate` wraps those scheduler jobs, `probe` the probe cycles.
- On election the leader reloads the state the previous leader wrote (a takeover is not a
  start: no startup grace) and probes every version at once.
- A follower re-reads the shared state every second so its dashboard and gateway show the
  leader's route, and queues an operator's action as a command row (`queue`); the leader
  applies queued commands within about 0.25 s (`apply_commands`) through the same code path
  as its own dashboard, with the operator as the audit actor.

With SQLite the monitor always leads and nothing here changes its behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from monitor.actor import Actor
from monitor.failover import engine
from monitor.failover.model import Failure, MonitorState, Observation, from_record
from monitor.failover.operations import ActionResult
from monitor.storage import commands
from monitor.storage.commands import CommandKind, CommandRow
from monitor.storage.lease import Fenced

if TYPE_CHECKING:
    from monitor.failover.operations import Operations
    from monitor.runtime import Runtime
    from monitor.services import ServiceUnit

log = logging.getLogger("monitor.ops.leadership")
COMMAND_POLL_S = 0.25
FOLLOW_S = 1.0


REPLAY_PROBES, REPLAY_ROWS = 4, 300  # recent probe rows folded into a reloaded state
KNOWN = frozenset(Failure)


def shared_state(runtime: Runtime, *, takeover: bool = False,
                 unit: ServiceUnit | None = None) -> MonitorState | None:
    """Blocking: the state the leader wrote, with the latest probes it stored folded in (a
    follower's view, or the start of a new leader). A takeover is not a start: no startup
    grace, and streaks continue from the previous leader's probes. `unit`: another service's
    (monitor.services), the default service's without it."""
    unit = unit or runtime.fleet.default()
    record = runtime.store.load_state(unit.name)
    if record is None:
        return None
    policy, now = unit.policy, runtime.clock()
    rows = runtime.store.probes(since=now - REPLAY_PROBES * policy.down_interval,
                                limit=REPLAY_ROWS, service=unit.name)
    state = engine.replay(from_record(record, policy, now), [
        Observation(version=r.version, ok=r.ok, at=r.at, latency_ms=r.latency_ms,
                    failure=Failure(r.failure) if r.failure in KNOWN else None, status=r.status,
                    passive=r.passive)
        for r in reversed(rows)], policy)
    return replace(state, started_at=now - policy.startup_grace) if takeover else state


class LeaderDuties:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def leading(self) -> bool:
        return self.runtime.leadership.is_leader

    def gate(self, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """A scheduler job that runs only while this monitor leads."""
        async def gated() -> None:
            if self.leading:
                await job()
        gated.__name__ = getattr(job, "__name__", "job")
        return gated

    async def probe(self, version: str) -> float:
        """The probe cycle of one version; a follower does not probe."""
        if not self.leading or self.runtime.desired.warming:
            return self.runtime.policy.interval
        return await self.runtime.watchdog.cycle(version)

    async def on_elected(self, term: int) -> None:
        await self.runtime.watchdog.reload(partial(shared_state, self.runtime, takeover=True))
        await self.runtime.rollout.reload()
        self.runtime.desired.warming = self.runtime.desired.spec is not None
        self._spawn(self._lead())  # quick: the lease loop waits for this method
        state = self.runtime.watchdog.state
        if state is not None:
            log.info("leading at term %d: state reloaded (active %s, epoch %d)", term,
                     state.active, state.epoch)

    async def _lead(self) -> None:
        """Adopt or start the replicas (bounded wait until ready), then probe everything."""
        await self.runtime.desired.lead()
        for version in self.runtime.policy.versions:
            self.runtime.scheduler.hurry(version)

    async def on_lost(self, term: int) -> None:
        log.warning("following from term %d on: probing, deciding and sending stop", term)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def follow(self) -> None:
        """A follower shows the leader's state (dashboard, gateway route). Once another
        monitor leads, it stops its replicas (and those a crashed monitor on this data dir
        left): a leader that only missed a renewal keeps them serving meanwhile."""
        if not self.leading:
            await self.runtime.watchdog.reload(partial(shared_state, self.runtime))
            await self.runtime.rollout.reload()
            if await asyncio.to_thread(self._another_leads):
                await self.runtime.desired.release(leftovers=True)

    def _another_leads(self) -> bool:
        leadership = self.runtime.leadership
        return (leadership.view() or {}).get("id") not in (None, leadership.holder)

    def fenced(self, write: Callable[[], None]) -> None:
        """Blocking: run `write` (a checkpoint) only while leading; with a lease, inside a
        fenced transaction (the lease row stays share-locked: no takeover meanwhile)."""
        leadership = self.runtime.leadership
        if not leadership.is_leader:
            return
        if not leadership.shared:
            write()
            return
        try:
            with self.runtime.store.write(fenced=True):
                write()
        except Fenced as exc:
            log.info("not written: %s", exc)

    async def unless_fenced(self, action: Awaitable[ActionResult]) -> ActionResult:
        """An action whose writes were refused because another monitor leads now."""
        try:
            return await action
        except Fenced:
            return ActionResult(False, "this monitor no longer leads; nothing was done")

    # Operator actions ------------------------------------------------------------------------
    async def queue(self, kind: CommandKind, actor: Actor,
                    params: Mapping[str, object]) -> ActionResult | None:
        """None when this monitor leads (act now); else the queued command's result."""
        if self.leading:
            return None
        if commands.is_command_request(actor.request_id):
            return ActionResult(False, "this monitor no longer leads; the command stays queued")
        runtime = self.runtime
        command_id = await asyncio.to_thread(partial(
            commands.queue, runtime.store, kind, params, actor=actor.name, role=actor.role,
            source_ip=actor.source_ip, user_agent=actor.user_agent,
            queued_by=runtime.leadership.holder or "", now=runtime.clock()))
        return ActionResult(True, f"queued for the leader as command {command_id}",
                            {"command": command_id})

    async def apply_commands(self) -> int:
        """Apply what followers queued, oldest first; returns how many were closed."""
        runtime = self.runtime
        done = 0
        for command in await asyncio.to_thread(commands.pending, runtime.store):
            if not self.leading or command.id is None:
                break
            if await asyncio.to_thread(commands.applied_before, runtime.store, command):
                result = "applied before a leader change"
            else:
                outcome = await self._apply(command)
                if not self.leading:
                    break
                result = ("ok: " if outcome.ok else "refused: ") + outcome.message
            try:
                await asyncio.to_thread(partial(
                    commands.mark_done, runtime.store, command.id, result=result,
                    by=runtime.leadership.holder or "", now=runtime.clock()))
            except Fenced:
                break
            done += 1
        return done

    async def _apply(self, command: CommandRow) -> ActionResult:
        runtime = self.runtime
        actor = Actor(command.actor, command.role, command.source_ip, command.user_agent,
                      command.request_id)
        args = command.arguments()
        reason = str(args.get("reason", ""))
        from monitor.services import UnknownService

        try:  # another service's action names it (QueuedActions); the default's does not
            actions = runtime.actions(str(args["service"]) if args.get("service") else None)
        except UnknownService as exc:
            return ActionResult(False, str(exc))
        match command.kind:
            case CommandKind.FAILOVER:
                return await actions.failover(actor, str(args.get("target", "")), reason=reason,
                                              force=bool(args.get("force", False)))
            case CommandKind.FAILBACK:
                return await actions.failback(actor, reason=reason)
            case CommandKind.PAUSE:
                return await actions.pause(actor, reason=reason)
            case CommandKind.RESUME:
                return await actions.resume(actor, reason=reason)
            case CommandKind.CHAOS:
                fault_params = args.get("params")
                return await actions.chaos(
                    actor, str(args.get("version", "")), str(args.get("fault", "")),
                    dict(fault_params) if isinstance(fault_params, dict) else {})
            case CommandKind.ROLLOUT:
                return await runtime.rollout_action(actor, str(args.pop("op", "")), args)
        return ActionResult(False, f"unknown command kind {command.kind!r}")


class QueuedActions:
    """One service's operator actions: queued for the leader on a follower (a further service
    named in the command; `service` None for the default one), done at once by that service's
    Operations on the leader."""

    def __init__(self, duties: LeaderDuties, operations: Operations,
                 service: str | None) -> None:
        self.duties, self.operations, self.service = duties, operations, service

    async def _queued(self, kind: CommandKind, actor: Actor,
                      params: dict[str, object]) -> ActionResult | None:
        named = {"service": self.service} if self.service is not None else {}
        return await self.duties.queue(kind, actor, {**params, **named})

    async def failover(self, actor: Actor, target: str, *, reason: str,
                       force: bool = False) -> ActionResult:
        return await self._queued(CommandKind.FAILOVER, actor, {
            "target": target, "reason": reason, "force": force}) or \
            await self.operations.failover(actor, target, reason=reason, force=force)

    async def failback(self, actor: Actor, *, reason: str) -> ActionResult:
        return await self._queued(CommandKind.FAILBACK, actor, {"reason": reason}) or \
            await self.operations.failback(actor, reason=reason)

    async def pause(self, actor: Actor, *, reason: str) -> ActionResult:
        return await self._queued(CommandKind.PAUSE, actor, {"reason": reason}) or \
            await self.operations.pause(actor, reason=reason)

    async def resume(self, actor: Actor, *, reason: str) -> ActionResult:
        return await self._queued(CommandKind.RESUME, actor, {"reason": reason}) or \
            await self.operations.resume(actor, reason=reason)

    async def chaos(self, actor: Actor, version: str, fault: str,
                    params: dict[str, Any]) -> ActionResult:
        return await self._queued(CommandKind.CHAOS, actor, {
            "version": version, "fault": fault, "params": params}) or \
            await self.duties.unless_fenced(
                self.operations.chaos(actor, version, fault, params))
