"""Prometheus collectors for the monitor, on a registry of their own.

Each `Metrics` owns its `CollectorRegistry`, so tests and several apps in one process never
collide on the global default registry. Label values that are known in advance are created at
zero, so `rate()` and alerts work before the first event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

FAILOVER_REASONS = ("automatic", "manual", "forced", "failback", "auto_failback")
NOTICE_STATUSES = ("pending", "sending", "failed", "sent", "unsent")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.probe_latency = Histogram(
            "monitor_probe_latency_seconds", "Latency of successful and failed probes",
            ["version"], buckets=LATENCY_BUCKETS, registry=r)
        self.schedule_lag = Histogram(
            "monitor_probe_schedule_lag_seconds",
            "Delay between a probe's planned start and its actual start",
            buckets=LAG_BUCKETS, registry=r)
        self.probes = Counter(
            "monitor_probes", "Probes by outcome: ok or the failure class",
            ["version", "outcome"], registry=r)
        self.active = Gauge(
            "monitor_active_version", "1 for the version clients are routed to, else 0",
            ["version"], registry=r)
        self.failovers = Counter(
            "monitor_failovers", "Switches of the active version by reason",
            ["reason"], registry=r)
        self.open_incidents = Gauge(
            "monitor_open_incidents", "Incidents currently open", registry=r)
        self.notices = Gauge(
            "monitor_notices", "Incident notices in the outbox by status",
            ["status"], registry=r)
        self.supervisor_restarts = Counter(
            "monitor_supervisor_restarts", "Restarts of a local service process",
            ["version"], registry=r)
        self.gateway_requests = Counter(
            "monitor_gateway_requests", "Client requests through the gateway by outcome",
            ["version", "outcome"], registry=r)
        self.version_up = Gauge(
            "monitor_version_up", "1 when the version is UP, else 0", ["version"], registry=r)
        self.write_queue = Gauge(
            "monitor_write_queue", "Decisions and probe rows waiting for the database "
            "(journaled); above 0 the monitor is degraded", registry=r)
        self.queued_writes = 0
        # labelled children by label values: `labels()` validates and locks on every call,
        # which costs more than the probe's own bookkeeping at a thousand probes a second
        self._probe_counts: dict[tuple[str, str], Any] = {}
        self._probe_latency: dict[str, Any] = {}
        self._version_up: dict[str, tuple[Any, float]] = {}
        self._active: tuple[str, tuple[str, ...]] | None = None
        for reason in FAILOVER_REASONS:
            self.failovers.labels(reason=reason)
        for status in NOTICE_STATUSES:
            self.notices.labels(status=status).set(0)

    def set_write_queue(self, length: int) -> None:
        self.queued_writes = length
        self.write_queue.set(length)

    def probe(self, version: str, ok: bool, failure: str | None,
              latency_ms: float | None) -> None:
        """Count one probe; a probe without a latency (refused, timeout) is only counted."""
        outcome = "ok" if ok else (failure or "unknown")
        counter = self._probe_counts.get((version, outcome))
        if counter is None:
            counter = self._probe_counts[(version, outcome)] = self.probes.labels(
                version=version, outcome=outcome)
        counter.inc()
        if latency_ms is not None:
            histogram = self._probe_latency.get(version)
            if histogram is None:
                histogram = self._probe_latency[version] = self.probe_latency.labels(
                    version=version)
            histogram.observe(max(latency_ms, 0.0) / 1000.0)

    def set_active(self, version: str, versions: Sequence[str]) -> None:
        """One gauge per version; a call that changes nothing costs nothing."""
        key = (version, tuple(versions))
        if key == self._active:
            return
        self._active = key
        for name in versions:
            self.active.labels(version=name).set(1 if name == version else 0)

    def failover(self, reason: str) -> None:
        self.failovers.labels(reason=reason).inc()

    def set_open_incidents(self, n: int) -> None:
        self.open_incidents.set(n)

    def set_notices(self, counts: dict[str, int]) -> None:
        """Set every status; a known status missing from `counts` drops to 0."""
        for status in {*NOTICE_STATUSES, *counts}:
            self.notices.labels(status=status).set(counts.get(status, 0))

    def supervisor_restart(self, version: str) -> None:
        self.supervisor_restarts.labels(version=version).inc()

    def gateway_request(self, version: str, outcome: str) -> None:
        self.gateway_requests.labels(version=version, outcome=outcome).inc()

    def set_version_state(self, version: str, state: str) -> None:
        value = 1.0 if state == "up" else 0.0
        gauge, last = self._version_up.get(version) or (self.version_up.labels(version=version),
                                                         None)
        if value != last:
            gauge.set(value)
            self._version_up[version] = gauge, value

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for the /metrics route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
