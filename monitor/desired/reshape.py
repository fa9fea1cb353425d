"""A spec revision that changes the set of versions, applied to the running monitor.

The versions (their priority order, which are local) shape the failover policy, the probe
schedule, the URLs and the engine's state. A revision that changes them reshapes all of these
together, keeping what each remaining version has earned (its streaks, ejections, history);
a new version starts UNKNOWN and is probed at once. The active version cannot be taken away
under the clients' feet: a revision that removes it waits (the caller audits it as
`deferred`) until the operator has failed over to a version the revision keeps.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from monitor.failover.model import Health, MonitorState

if TYPE_CHECKING:
    from monitor.runtime import Runtime


def with_versions(state: MonitorState, versions: tuple[str, ...]) -> MonitorState:
    """`state` for another version order: kept versions keep their health, new ones start
    UNKNOWN."""
    kept = {h.name: h for h in state.health}
    return replace(state, health=tuple(kept.get(v) or Health(name=v) for v in versions))


def removes_active(active: str, versions: tuple[str, ...]) -> str | None:
    """Why the new version order cannot apply now, or None."""
    if active in versions:
        return None
    return (f"the revision removes {active}, the active version: fail over to one of "
            f"{', '.join(versions)} first")


async def retire_fixed_services(runtime: Runtime) -> None:
    """The spec's replicas serve now: stop the fixed-port services of a spec-less start."""
    supervisor, runtime.supervisor = runtime.supervisor, None
    if supervisor is not None:
        await supervisor.stop()


async def reshape(runtime: Runtime, versions: dict[str, str]) -> str | None:
    """Give the running monitor the version order `versions` (name -> configured URL);
    returns why it must wait, or None once applied."""
    names = tuple(versions)
    if why := removes_active(runtime.watchdog.state.active, names):
        return why
    policy = replace(runtime.policy, versions=names)
    watchdog = runtime.watchdog

    def reshaped() -> MonitorState:  # runs under the watchdog's lock: no decision meanwhile
        watchdog.policy = policy
        return with_versions(watchdog.state, names)

    await watchdog.reload(reshaped)
    runtime.policy = runtime.operations.policy = runtime.reads.policy = policy
    runtime.urls.set_fixed(versions)
    runtime.scheduler.set_versions(names)
    return None
