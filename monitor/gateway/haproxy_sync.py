"""Keep HAProxy on the monitor's route: apply each decision, verify it, correct drift.

:class:`HAProxySync.tick` runs often (every 0.25 s). It acts when the route changed (a
decision: applied through the Runtime API, then verified by reading ``show servers state``
again) and every ``every`` seconds (a reconcile: when HAProxy's state differs from the route
without a decision, someone changed it behind the monitor's back; it is corrected and audited
as drift). An unreachable HAProxy is audited and emailed once, until it answers again;
``status()`` is what /readyz and the dashboard show.

Several services (:class:`ServiceSyncs`): one backend per service. The default service's
backend is ``MONITOR_HAPROXY_BACKEND``; another service's backend is named like the service
(``films`` for ``/films``; the name rules of :func:`monitor.gateway.route.valid_service` are
valid HAProxy identifiers). Each backend is synced, verified and audited on its own (the audit
rows name the backend); a service the monitor no longer offers is left as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from monitor.gateway.haproxy import HAProxyError, RuntimeAPI, desired, drift
from monitor.gateway.route import Route

log = logging.getLogger(__name__)

# (action, target, params, outcome, reason, notify) -> an audit row (and a notice if notify)
Found = dict[str, tuple[str, str]]  # server -> (state wanted, state found)
Record = Callable[[str, str, dict[str, Any], str, str, bool], Awaitable[None]]


@dataclass
class SyncStatus:
    reachable: bool | None = None  # None until the first attempt
    error: str = ""
    checked_at: float = 0.0
    applied_epoch: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "haproxy", "reachable": self.reachable, "error": self.error,
                "checked_at": self.checked_at, "applied_epoch": self.applied_epoch}


class HAProxySync:
    def __init__(self, api: RuntimeAPI, backend: str, route: Callable[[], Route],
                 record: Record, clock: Callable[[], float], *, every: float = 3.0) -> None:
        self.api, self.backend, self.route, self.record, self.clock = \
            api, backend, route, record, clock
        self.every = every
        self.state = SyncStatus()
        self._applied: Route | None = None

    def status(self) -> dict[str, Any]:
        return self.state.as_dict()

    async def tick(self) -> None:
        route = self.route()
        decision = self._applied is None or not route.same_path(self._applied)
        now = self.clock()
        if not decision and now - self.state.checked_at < self.every:
            return
        self.state.checked_at = now
        try:
            corrected, by_hand = await self._reconcile(route, self._applied)
        except HAProxyError as exc:
            await self._unreachable(str(exc))
            return
        if self.state.reachable is False:
            await self.record("haproxy.reachable", self.backend, {}, "ok",
                              "HAProxy answers again", False)
        self.state.reachable, self.state.error = True, ""
        if by_hand:
            await self.record("haproxy.drift", self.backend, {"corrected": by_hand}, "ok",
                              "HAProxy differed from the monitor's route; restored", False)
        self._applied = route
        self.state.applied_epoch = route.epoch

    async def _reconcile(self, route: Route, applied: Route | None
                         ) -> tuple[Found, Found]:
        """Bring the servers to the route's states and verify: the differences found, and
        those of them that were not the monitor's own (a server no longer as ``applied``, the
        route last applied, left it: changed by hand, even when a decision comes with it)."""
        servers = await self.api.servers(self.backend)
        wanted = desired(route, servers)
        found = drift(wanted, servers)
        if not found:
            return {}, {}
        moved = drift(desired(applied, servers), servers) if applied is not None else {}
        by_hand = {name: found[name] for name in found if name in moved}
        # "ready" first, so there is never a moment without a ready server.
        for name in sorted(found, key=lambda name: wanted[name] != "ready"):
            await self.api.set_state(self.backend, name, wanted[name])
        after = await self.api.servers(self.backend)
        left = drift(desired(route, after), after)
        if left:
            raise HAProxyError(f"HAProxy did not take the route: {left}")
        log.info("HAProxy set to route epoch %d: %s", route.epoch, found)
        return found, by_hand

    async def _unreachable(self, error: str) -> None:
        first = self.state.reachable is not False
        self.state.reachable, self.state.error = False, error
        if first:
            log.error("HAProxy unreachable: %s", error)
            await self.record("haproxy.unreachable", self.backend, {"error": error}, "failed",
                              error, True)


class ServiceSyncs:
    """The default service's :class:`HAProxySync` and one more per other service, made alike
    on the backend named like the service; the same ``tick``/``status`` as one sync."""

    def __init__(self, default: HAProxySync,
                 others: Callable[[], Mapping[str, Route]] | None) -> None:
        self.default = default
        self.others = others
        self.syncs: dict[str, HAProxySync] = {}
        self._routes: dict[str, Route] = {}
        self._refused: set[str] = set()

    async def tick(self) -> None:
        await self.default.tick()
        if self.others is None:
            return
        self._routes = dict(self.others())
        for name in self._routes:
            if name == self.default.backend:
                if name not in self._refused:
                    self._refused.add(name)
                    log.error("service %s not synced to HAProxy: its backend is the default "
                              "service's (MONITOR_HAPROXY_BACKEND)", name)
                continue
            sync = self.syncs.get(name)
            if sync is None:
                sync = self.syncs[name] = self._make(name)
            await sync.tick()

    def _make(self, name: str) -> HAProxySync:
        base = self.default
        return HAProxySync(base.api, name, lambda: self._routes[name], base.record, base.clock,
                           every=base.every)

    def status(self) -> dict[str, Any]:
        status = self.default.status()
        if self.syncs:
            status["services"] = {name: sync.status() for name, sync in self.syncs.items()
                                  if name in self._routes}
        return status
