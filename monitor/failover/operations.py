"""Operator actions: manual failover, failback, pause, resume and chaos, each audited.

Engine steps go through the watchdog (one transaction with their audit rows; a refusal is
audited as refused). Chaos writes its intent row BEFORE the fault is injected and the outcome
after, so no fault is ever live without an audit row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from monitor.actor import Actor
from monitor.failover import engine
from monitor.failover.chaos import FAULTS, KILL, ChaosOutcome, Fault, inject
from monitor.failover.model import Policy
from monitor.failover.watchdog import Watchdog
from monitor.recorder import Recorder


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Killer = Callable[[str, int], Awaitable[list[str]]]  # version, count -> replicas killed


class Operations:
    def __init__(self, *, watchdog: Watchdog, policy: Policy, urls: Mapping[str, str],
                 client: httpx.AsyncClient, chaos_token: str, recorder: Recorder,
                 killer: Killer | None = None) -> None:
        self.watchdog, self.policy, self.urls = watchdog, policy, urls
        self.client, self.chaos_token, self.recorder = client, chaos_token, recorder
        self.killer = killer

    async def failover(self, actor: Actor, target: str, *, reason: str,
                       force: bool = False) -> ActionResult:
        ok, message = await self.watchdog.act(
            lambda state, now: engine.manual_failover(state, target, self.policy, now,
                                                      reason=reason, force=force,
                                                      actor=actor.name),
            actor=actor, action="failover.manual", target=target, params={"force": force},
            reason=reason)
        return ActionResult(ok, message if not ok else f"switched to {target}")

    async def failback(self, actor: Actor, *, reason: str) -> ActionResult:
        primary = self.policy.versions[0]
        ok, message = await self.watchdog.act(
            lambda state, now: engine.failback(state, self.policy, now, reason=reason,
                                               actor=actor.name),
            actor=actor, action="failover.failback", target=primary, reason=reason)
        return ActionResult(ok, message if not ok else f"failed back to {primary}")

    async def pause(self, actor: Actor, *, reason: str) -> ActionResult:
        ok, message = await self.watchdog.act(
            lambda state, now: engine.pause(state, now, reason=reason, actor=actor.name),
            actor=actor, action="failover.pause", reason=reason)
        return ActionResult(ok, message if not ok else "automatic failover paused")

    async def resume(self, actor: Actor, *, reason: str) -> ActionResult:
        ok, message = await self.watchdog.act(
            lambda state, now: engine.resume(state, now, reason=reason, actor=actor.name),
            actor=actor, action="failover.resume", reason=reason)
        return ActionResult(ok, message if not ok else "automatic failover resumed")

    async def chaos(self, actor: Actor, version: str, fault: str,
                    params: dict[str, Any]) -> ActionResult:
        """Intent row, injection, outcome row; an unknown version or fault calls nothing."""
        if version not in self.urls or fault not in FAULTS:
            message = (f"unknown version {version!r}" if version not in self.urls
                       else f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
            await self.recorder.arecord(actor, f"chaos.{fault}", target=version,
                                        params={**params, "status": None},
                                        outcome="refused", reason=message)
            return ActionResult(False, f"{version}: {message}")
        await self.recorder.arecord(actor, "chaos.intent", target=version,
                                    params={**params, "fault": fault}, outcome="requested")
        if fault == KILL:
            outcome = await self._kill(version, int(params.get("count", 1)))
        else:
            outcome = await inject(self.client, self.urls[version], self.chaos_token, fault,
                                   params)
        if outcome.ok:
            self._remember_faults(version, fault, params, outcome.body)
        await self.recorder.arecord(actor, f"chaos.{fault}", target=version,
                                    params={**params, "status": outcome.status},
                                    outcome="ok" if outcome.ok else "refused",
                                    reason=outcome.message)
        return ActionResult(outcome.ok, f"{version}: {outcome.message}")

    async def _kill(self, version: str, count: int) -> ChaosOutcome:
        """SIGKILL `count` replica processes of a version (local replicas only)."""
        killed = await self.killer(version, count) if self.killer else []
        if not killed:
            return ChaosOutcome(False, None, "no running replica of this version to kill")
        return ChaosOutcome(True, None, f"killed {', '.join(killed)}",
                            {"killed": killed})

    def _remember_faults(self, version: str, fault: str, params: dict[str, Any],
                         body: dict[str, Any] | None) -> None:
        """Show what was injected at once, even while the version cannot report it itself."""
        reported = body.get("faults") if body else None
        faults = self.watchdog.faults
        if isinstance(reported, dict):
            faults[version] = reported
        elif fault == Fault.RESET:
            faults[version] = {}
        else:
            faults[version] = {**faults.get(version, {}), fault: params}
