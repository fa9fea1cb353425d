"""Every service of the running monitor (DESIGN.md section 15): the default one and the
further ones (`monitor.services`), looked up by name, started and stopped together, and
following the spec: a revision that adds a further service starts it, one that removes it
stops it, one that changes its versions or policy rebuilds it from its stored state (epoch,
active, incident kept). A change that would take away a service's active version waits,
audited as `deferred`, until the operator has failed that service over; every change is
audited as `spec.reconcile` with the service named.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from monitor.actor import SYSTEM
from monitor.config import ConfigError
from monitor.desired.spec import ServiceSpec
from monitor.failover.model import EngineError
from monitor.ops.leadership import shared_state
from monitor.services import (
    Gate,
    Routes,
    ServiceConfig,
    ServiceUnit,
    UnknownService,
    build_unit,
    configured,
    start_unit,
    stop_unit,
)

if TYPE_CHECKING:
    from monitor.runtime import Runtime


class Fleet:
    """The default service (the runtime's own parts, read afresh, since a spec revision may
    reshape them) and the further ones, built here."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.configs = {c.name: c for c in configured(runtime.settings, runtime.desired.others,
                                                      runtime.service)}
        self.extra: dict[str, ServiceUnit] = {
            name: build_unit(runtime, config) for name, config in self.configs.items()}
        self._gate: tuple[Gate, float] | None = None  # set by start: new units start too
        self._deferred: dict[str, str] = {}

    def default(self) -> ServiceUnit:
        r = self.runtime
        return ServiceUnit(r.service, r.policy, r.urls, r.watchdog, r.operations, r.reads)

    def units(self) -> dict[str, ServiceUnit]:
        """Name -> unit, the default service first, then the others by name."""
        return {self.runtime.service: self.default(), **dict(sorted(self.extra.items()))}

    def unit(self, name: str | None) -> ServiceUnit:
        if name in (None, self.runtime.service):
            return self.default()
        if name not in self.extra:
            known = ", ".join(self.units())
            raise UnknownService(f"unknown service {str(name)[:40]!r}; one of {known}")
        return self.extra[name]

    def routes(self) -> Routes:
        """For the gateway: per service (epoch, route candidates, urls)."""
        return {name: unit.routes() for name, unit in self.units().items()}

    def report_failure(self, service: str | None, version: str, failure: str) -> None:
        """A gateway failure of one service's version: probe it soon (never a failover on
        its own); an unknown service or version is ignored, as the watchdog does."""
        if service in (None, self.runtime.service):
            self.runtime.report_gateway_failure(version, failure)
        elif service in self.extra:
            self.extra[service].watchdog.report_passive(version, failure)

    def start(self, gate: Gate, flush_s: float) -> None:
        self._gate = (gate, flush_s)
        for unit in self.extra.values():
            start_unit(unit, gate, flush_s)

    async def stop(self) -> None:
        for unit in self.extra.values():
            await stop_unit(unit)

    def close(self) -> None:
        for unit in self.extra.values():
            unit.watchdog.close()

    async def follow(self) -> None:
        """A follower (PostgreSQL HA) shows each further service's state as the leader wrote
        it; a new leader starts from it (a stale epoch is caught by the compare-and-set)."""
        if self.runtime.leadership.is_leader:
            return
        for unit in self.extra.values():
            await unit.watchdog.reload(partial(shared_state, self.runtime, unit=unit))

    # Following the spec -------------------------------------------------------------------
    async def reconcile(self, others: list[ServiceSpec]) -> None:
        """Take the further services of a new spec revision (the settings' stay as they are)."""
        try:
            wanted = {c.name: c for c in configured(self.runtime.settings, others,
                                                    self.runtime.service)}
        except ConfigError as exc:
            await self._note("", "refused", str(exc))
            return
        for name in [n for n in self.extra if n not in wanted]:
            await self._drop(name)
            await self._note(name, "ok", "the spec no longer has this service")
        for name, config in wanted.items():
            if self.configs.get(name) != config:
                await self._take(config)

    async def _take(self, config: ServiceConfig) -> None:
        old = self.extra.get(config.name)
        if old is not None and old.watchdog.state.active not in config.urls:
            why = (f"the revision removes {old.watchdog.state.active}, the active version of "
                   f"{config.name}: fail {config.name} over first")
            if self._deferred.get(config.name) != why:
                self._deferred[config.name] = why
                await self._note(config.name, "deferred", why)
            return
        if old is not None:
            await self._drop(config.name)
        try:
            unit = build_unit(self.runtime, config)
        except (ConfigError, EngineError) as exc:
            await self._note(config.name, "refused", str(exc))
            return
        self.extra[config.name], self.configs[config.name] = unit, config
        self._deferred.pop(config.name, None)
        if self._gate is not None:
            start_unit(unit, *self._gate)
        await self._note(config.name, "ok", "service changed" if old else "service added",
                         versions=list(config.urls))

    async def _drop(self, name: str) -> None:
        unit = self.extra.pop(name)
        self.configs.pop(name, None)
        await stop_unit(unit)
        unit.watchdog.close()

    async def _note(self, name: str, outcome: str, reason: str,
                    versions: list[str] | None = None) -> None:
        params = {"service": name, **({"versions": versions} if versions is not None else {})}
        await self.runtime.arecord(SYSTEM, "spec.reconcile", target=name, params=params,
                                   outcome=outcome, reason=reason)
