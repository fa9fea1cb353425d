"""Several services in one monitor: one `ServiceUnit` per service (DESIGN.md sections 13, 15).

A unit is everything that fails one service over: its policy (versions in priority order,
fall, rise, cooldown, intervals), its URLs, its own Watchdog (engine state, epoch, incident,
decision lock and database thread), Operations, StatusReader and probe schedule. Units share
nothing that decides: a decision of one service never waits on another's lock, write or
incident. They share the probe client, the store, the audit chain and the leader lease.

The default service ("books", or the first document of the spec) is the runtime's own parts
(`runtime.watchdog`, `runtime.policy`, ...), so the rest of the code keeps working; the other
services come from `MONITOR_EXTRA_SERVICES` and from the further `kind: Service` documents of
the spec in force. A further spec service gives its versions as `url:`; local `command:`
versions, rollouts and autoscaling are the default service's (`desired.spec.parse`).
`monitor.fleet.Fleet` holds the units and follows spec revisions.
Each service's policy is the MONITOR_* settings with its spec's `failover:` block on top.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from monitor.actor import Actor
from monitor.config import ConfigError, Settings
from monitor.desired.spec import Failover, ServiceSpec
from monitor.failover.model import EngineError, Policy
from monitor.failover.operations import ActionResult, Operations
from monitor.failover.scheduler import Scheduler
from monitor.failover.status import StatusReader
from monitor.failover.view import status_view
from monitor.failover.watchdog import Watchdog
from monitor.notices import delivery
from monitor.storage.journal import Journal
from monitor.storage.store import DEFAULT_SERVICE

if TYPE_CHECKING:
    from monitor.runtime import Runtime

Gate = Callable[[Callable[[], Awaitable[object]]], Callable[[], Awaitable[None]]]
# per service: (epoch, route candidates as StatusReader.route_candidates returns them, urls)
Routes = dict[str, tuple[int, list[tuple[str, str]], Mapping[str, str]]]


class UnknownService(LookupError):
    """No service of that name; the message names it and the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown service"


class Actions(Protocol):
    """The operator actions of one service (the runtime's for the default service)."""

    async def failover(self, actor: Actor, target: str, *, reason: str,
                       force: bool = False) -> ActionResult: ...

    async def failback(self, actor: Actor, *, reason: str) -> ActionResult: ...

    async def pause(self, actor: Actor, *, reason: str) -> ActionResult: ...

    async def resume(self, actor: Actor, *, reason: str) -> ActionResult: ...

    async def chaos(self, actor: Actor, version: str, fault: str,
                    params: dict[str, Any]) -> ActionResult: ...


def policy_from(settings: Settings, versions: tuple[str, ...] | None = None,
                failover: Failover | None = None) -> Policy:
    """The failover policy of one service: the settings, with its spec's `failover:` on top;
    `versions` are the settings' own by default."""
    given = failover or Failover()
    versions = versions or tuple(settings.service_urls())

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return Policy(
        versions=versions, fall=pick(given.fall, settings.fall),
        rise=pick(given.rise, settings.rise),
        cooldown=pick(given.cooldown_seconds, settings.cooldown),
        startup_grace=pick(given.startup_grace_seconds, settings.startup_grace),
        auto_failback_after=pick(given.auto_failback_after_seconds,
                                 settings.auto_failback_after),
        interval=pick(given.interval_seconds, settings.interval),
        fast_interval=pick(given.fast_interval_seconds, settings.fast_interval),
        down_interval=pick(given.down_interval_seconds, settings.down_interval))


@dataclass(frozen=True)
class ServiceConfig:
    """One further service as configured: versions (priority order) -> URL, and its policy."""

    name: str
    urls: dict[str, str]
    failover: Failover | None = None


def configured(settings: Settings, others: list[ServiceSpec],
               default: str) -> list[ServiceConfig]:
    """The services beside the default one: the settings', then the spec's further documents.
    A name given twice, or equal to the default service's, is a ConfigError naming where."""
    found = [ServiceConfig(name, dict(urls)) for name, urls in settings.extra_services.items()]
    for spec in others:  # url versions, at least two: checked by desired.spec.parse
        found.append(ServiceConfig(spec.name, {v.name: str(v.url) for v in spec.spec.versions},
                                   spec.spec.failover))
    names = [default] + [c.name for c in found]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"MONITOR_EXTRA_SERVICES: service {name!r} is configured twice "
                              "(the default service, the settings or the spec)")
    return found


@dataclass
class ServiceUnit:
    """The parts that fail one service over. `scheduler` is None for the default service,
    which the runtime's own scheduler probes."""

    name: str
    policy: Policy
    urls: Mapping[str, str]
    watchdog: Watchdog
    operations: Operations
    reads: StatusReader
    scheduler: Scheduler | None = None

    def status(self) -> dict[str, Any]:
        return {"service": self.name, **self.reads.status()}

    def summary(self, now: float) -> dict[str, Any]:
        """One line of `/api/services`, from the engine's memory (no query): active version,
        epoch, pause, open incident kind (None) and the state of each version."""
        view = status_view(self.watchdog.state, self.policy, now)
        return {"name": self.name, "active": view["active"], "epoch": view["epoch"],
                "paused": view["paused"], "incident": view["incident"],
                "versions": [{"name": v["name"], "state": v["state"]}
                             for v in view["versions"]]}

    def routes(self) -> tuple[int, list[tuple[str, str]], Mapping[str, str]]:
        return self.watchdog.state.epoch, self.reads.route_candidates(), self.urls


def build_unit(runtime: Runtime, config: ServiceConfig) -> ServiceUnit:
    """A further service's unit, its state loaded (created at epoch 0 the first time)."""
    settings = runtime.settings
    try:
        policy = policy_from(settings, tuple(config.urls), config.failover)
    except EngineError as exc:
        raise ConfigError(f"MONITOR_SPEC: {config.name}: failover: {exc}") from None
    if settings.timeout >= policy.interval or policy.fast_interval > policy.interval:
        raise ConfigError(f"MONITOR_SPEC: {config.name}: failover: the intervals must be above "
                          f"MONITOR_TIMEOUT ({settings.timeout}), fastIntervalSeconds at most "
                          "intervalSeconds")
    watchdog = Watchdog(
        policy=policy, urls=config.urls, store=runtime.store, audit_key=runtime.keys.audit,
        client=runtime.client, clock=runtime.clock, canary=settings.canary(),
        timeout=settings.timeout, slow_ms=settings.slow_ms, enqueue=delivery.enqueue,
        journal=Journal(settings.data_dir / f"decisions.{config.name}.journal"),
        service=config.name)
    operations = Operations(watchdog=watchdog, policy=policy, urls=config.urls,
                            client=runtime.client, chaos_token=runtime.keys.chaos_token,
                            recorder=runtime.recorder)
    reads = StatusReader(watchdog=watchdog, policy=policy, urls=config.urls,
                         store=runtime.store, clock=runtime.clock, processes=dict)
    leading = runtime.duties

    async def cycle(version: str) -> float:
        if not leading.leading:  # a follower does not probe
            return policy.interval
        return await watchdog.cycle(version)

    scheduler = Scheduler(cycle=cycle, versions=policy.versions,
                          first_delay=min(settings.interval, 1.0),
                          in_flight=runtime.scheduler.slots,  # one in-flight limit for all
                          on_lag=runtime.metrics.schedule_lag.observe)
    watchdog.on_hurry = scheduler.hurry
    watchdog.load()
    return ServiceUnit(config.name, policy, config.urls, watchdog, operations, reads, scheduler)


def start_unit(unit: ServiceUnit, gate: Gate, flush_s: float) -> None:
    """Probe the unit's versions and run its time-driven decisions, while leading."""
    if unit.scheduler is None:
        return
    unit.scheduler.start()
    unit.scheduler.every(0.25, gate(unit.watchdog.tick), "tick")
    unit.scheduler.every(flush_s, gate(unit.watchdog.flush_probes), "probe-rows")


async def stop_unit(unit: ServiceUnit) -> int:
    """Stop probing, write what is batched; returns how many decisions stay queued."""
    if unit.scheduler is not None:
        unit.scheduler.shutdown()
    await unit.watchdog.idle()
    return await unit.watchdog.flush()


async def wait_live(client: httpx.AsyncClient, urls: Mapping[str, str], *,
                    timeout: float) -> None:
    """Give freshly spawned services a moment to listen, so the first probes are fair."""
    pending = set(urls)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for version in list(pending):
            try:
                await client.get(f"{urls[version]}/health/live", timeout=0.5)
                pending.discard(version)
            except httpx.HTTPError:
                pass
        await asyncio.sleep(0.1)


def default_name(runtime: Runtime) -> str:
    spec = runtime.desired.spec
    return spec.name if spec is not None else DEFAULT_SERVICE

