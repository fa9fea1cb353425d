"""The monitor's side of the client path: the signed route files the gateway follows, the
datagram socket its passive evidence comes back on, the spawned gateway process, or HAProxy
driven through its Runtime API (`MONITOR_DATAPLANE=haproxy`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from monitor.config import Settings

if TYPE_CHECKING:
    from monitor.gateway.haproxy_sync import HAProxySync
    from monitor.gateway.route import Route
    from monitor.ops.metrics import Metrics
    from monitor.runtime import Runtime

log = logging.getLogger("monitor")


class DataPlane:
    """The monitor's side of the client path: the route file, the evidence socket and the
    spawned gateway process."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        from monitor.gateway.evidence import Receiver
        from monitor.gateway.feed import RoutePublisher, route_from
        from monitor.gateway.haproxy_sync import ServiceSyncs
        from monitor.gateway.offer import drop_counts, other_services, service_evidence
        from monitor.gateway.route import PURPOSE
        from monitor.ops.supervisor import ChildSpec, Supervisor

        self.settings = settings
        key = runtime.keys.derive(PURPOSE)
        self.publisher = RoutePublisher(settings.data_dir, key, lambda: route_from(
            runtime.watchdog.state.epoch, runtime.route_candidates(), runtime.urls, time.time(),
            replicas=runtime.desired.endpoints(), weights=runtime.rollout.weights()),
            services=other_services(runtime, time.time))
        self.receiver = Receiver(settings.data_dir, key, time.time,
                                 runtime.report_gateway_failure,
                                 _counter(runtime.metrics, runtime.rollout.observe_counts),
                                 on_service_report=service_evidence(runtime),
                                 on_service_counts=drop_counts)
        self.gateway: Supervisor | None = None
        self.haproxy = ServiceSyncs(_haproxy_sync(settings, runtime, self.publisher.current),
                                    self.publisher.services) \
            if settings.dataplane == "haproxy" else None
        if self.haproxy is not None:
            runtime.dataplane_status = self.haproxy.status
        elif settings.spawn_gateway:
            env = {k: v for k, v in os.environ.items() if k.startswith("MONITOR_")}
            env["MONITOR_DATA_DIR"] = str(settings.data_dir.resolve())
            spec = ChildSpec(name="gateway", env=env,
                             argv=[sys.executable, "-m", "monitor", "gateway", "--host",
                                   settings.host, "--port", str(settings.gateway_port)])
            self.gateway = Supervisor([spec], on_event=runtime._on_child_event,
                                      log_dir=settings.data_dir / "logs",
                                      pid_dir=settings.data_dir / "run", backoff_base=0.2)
        self._task: asyncio.Task[None] | None = None

    async def publish(self) -> None:
        await self.publisher.publish()

    async def start(self) -> None:
        self.receiver.start()
        self._task = asyncio.create_task(self._follow_state())
        if self.gateway is not None:
            await self.gateway.start()
            await _wait_listening(self.settings.host, self.settings.gateway_port, timeout=15.0)

    async def _follow_state(self) -> None:
        while True:
            try:
                await self.publisher.publish()
                if self.haproxy is not None:
                    await self.haproxy.tick()
            except Exception:
                log.exception("route publishing failed")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.receiver.stop()


def _counter(metrics: Metrics, also: Callable[[list[tuple[str, str, int]]], None]
             ) -> Callable[[list[tuple[str, str, int]]], None]:
    """The gateway's outcome counts into the monitor's `monitor_gateway_requests` (and the
    rollout's analysis window)."""
    from monitor.gateway.evidence import P99_US

    def add(counts: list[tuple[str, str, int]]) -> None:
        also(counts)
        for version, outcome, requests in counts:
            if outcome != P99_US:
                metrics.gateway_requests.labels(version=version, outcome=outcome).inc(requests)
    return add


async def _wait_listening(host: str, port: int, *, timeout: float) -> None:
    """Until something accepts connections on host:port (the gateway we spawned), so the
    banner is printed when clients can connect; a gateway that does not come up is only
    logged (it is supervised and restarted)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    log.error("the gateway is not listening on %s:%d after %g s", host, port, timeout)


def _haproxy_sync(settings: Settings, runtime: Runtime, route: Callable[[], Route]
                  ) -> HAProxySync:
    """HAProxy driven through its Runtime API; its audit rows go through the runtime."""
    from monitor.actor import SYSTEM
    from monitor.gateway.haproxy import RuntimeAPI
    from monitor.gateway.haproxy_sync import HAProxySync  # noqa: F811 - the runtime import

    async def record(action: str, target: str, params: dict[str, Any], outcome: str, reason: str,
                     notify: bool) -> None:
        notice = ("dataplane", f"HAProxy unreachable: {reason}"[:200],
                  {"target": target, "reason": reason}) if notify else None
        await runtime.arecord(SYSTEM, action, target=target, params=params, outcome=outcome,
                              reason=reason, notice=notice)

    return HAProxySync(RuntimeAPI(settings.haproxy_socket), settings.haproxy_backend, route,
                       record, time.time)
