"""Read models of the running monitor: the status view behind `/api/status` and the overview,
24 h uptime per version, the latency series of the chart, and the gateway's route order.

Reads only: the engine state from the watchdog's memory, history from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlmodel import select

from monitor.failover.health import shown_state
from monitor.failover.model import UP, Policy
from monitor.failover.view import status_view
from monitor.failover.watchdog import Watchdog
from monitor.storage import audit
from monitor.storage.rollup_reads import uptime
from monitor.storage.store import Incident, ProbeRow, Store

UPTIME_CACHE_S = 5.0
Processes = Callable[[], dict[str, dict[str, Any]]]  # supervisor status; {} when external
LatencySeries = dict[str, list[tuple[float, float | None]]]


class StatusReader:
    def __init__(self, *, watchdog: Watchdog, policy: Policy, urls: Mapping[str, str],
                 store: Store, clock: Callable[[], float], processes: Processes) -> None:
        self.watchdog, self.policy, self.urls = watchdog, policy, urls
        self.store, self.clock, self.processes = store, clock, processes
        self._uptime: tuple[float, dict[str, float]] = (0.0, {})

    def status(self) -> dict[str, Any]:
        now = self.clock()
        state = self.watchdog.state
        view = status_view(state, self.policy, now)
        uptime = self.uptime_24h(now)
        processes = self.processes()
        for item in view["versions"]:
            process = item["process"] = processes.get(item["name"])  # None when external
            if process and process["given_up"]:
                item["reason"] = "; ".join(filter(None, [
                    item["reason"], f"process left down after {process['restarts']} restarts "
                                    f"({process['last_exit']})"]))
            last = self.watchdog.last.get(item["name"])
            item["url"] = self.urls[item["name"]]
            item["faults"] = self.watchdog.faults.get(item["name"], {})
            item["last_probe_at"] = audit.utc_iso(last.at) if last else None
            item["uptime_24h"] = uptime.get(item["name"])
        view["incident"] = self.open_incident()
        view["started_at"] = audit.utc_iso(state.started_at)
        view["now"] = audit.utc_iso(now)
        return view

    def open_incident(self) -> dict[str, Any] | None:
        with self.store.read() as session:
            row = session.exec(select(Incident).where(
                Incident.closed_at.is_(None),  # type: ignore[union-attr]
                Incident.service == self.watchdog.service)).first()
        if row is None:
            return None
        return {"id": row.id, "kind": row.kind, "summary": row.summary,
                "opened_at": audit.utc_iso(row.opened_at)}

    def uptime_24h(self, now: float) -> dict[str, float]:
        """Percent of successful probes per version over 24 h, cached for a few seconds."""
        cached_at, values = self._uptime
        if now - cached_at < UPTIME_CACHE_S:
            return values
        # every tier, each read by an index range (storage.rollup_reads)
        values = uptime(self.store, since=now - 86400, until=now + 1,
                        service=self.watchdog.service)
        self._uptime = (now, values)
        return values

    def latency_series(self, minutes: int = 15) -> LatencySeries:
        """Per version, (time, latency) of each probe of the last `minutes`; None = failed."""
        since = self.clock() - minutes * 60
        with self.store.read() as session:
            rows = session.exec(select(ProbeRow.version, ProbeRow.at, ProbeRow.ok,
                                       ProbeRow.latency_ms)
                                .where(ProbeRow.at >= since,
                                       ProbeRow.service == self.watchdog.service)
                                .order_by(ProbeRow.at)).all()  # type: ignore[arg-type]
        series: LatencySeries = {v: [] for v in self.urls}
        for version, at, ok, latency in rows:
            series.setdefault(version, []).append((at, latency if ok else None))
        return series

    def route_candidates(self) -> list[tuple[str, str]]:
        """The active version, then the other UP versions in priority order."""
        state = self.watchdog.state
        now = self.clock()
        # on every gateway request: only the shown state, not the whole dashboard view
        order = [state.active] + [
            v for v in self.policy.versions
            if v != state.active and shown_state(state.health_of(v), self.policy, now) == UP]
        return [(v, self.urls[v]) for v in order]
