"""`python -m monitor run`: the dashboard around one runtime, plus the gateway process, until
a signal.

The gateway is its own process (`python -m monitor gateway`, see monitor.gateway.process),
spawned and supervised here unless MONITOR_SPAWN_GATEWAY=0; it follows the route file this
process publishes (monitor.gateway.feed) and reports passive evidence back over a datagram
socket (monitor.gateway.evidence). The gateway and the local services outlive a monitor that
dies; the next monitor adopts them through their pid files in `<data dir>/run`.

Sockets are bound before anything starts, so a taken port is one clear line naming its setting.
SIGINT/SIGTERM stop the scheduler, let in-flight writes finish, write the shutdown audit row and
a checkpoint, stop the children (the gateway first) and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.gateway.haproxy_sync import HAProxySync
    from monitor.gateway.route import Route
    from monitor.ops.metrics import Metrics
    from monitor.runtime import Runtime

import uvicorn

from monitor.config import Settings

log = logging.getLogger("monitor")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int, setting: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only disables Nagle on sockets whose protocol says TCP,
    # and without TCP_NODELAY every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        message = f"error: {setting}: cannot listen on {host}:{port}: {exc.strerror}"
        raise SystemExit(message) from None
    sock.listen(2048)
    # Not inheritable: the children (which outlive a killed monitor) must not keep the
    # dashboard port, or the next monitor could not bind it.
    sock.set_inheritable(False)
    return sock


def serve(settings: Settings) -> int:
    from monitor.ops import preflight
    from monitor.ops.logs import configure_logging
    from monitor.storage.datadir import DataDirBusy, DataDirLock, private_files

    configure_logging()
    private_files()
    try:
        lock = DataDirLock(settings.data_dir).acquire()  # held until this process exits
    except DataDirBusy as exc:
        print(exc, file=sys.stderr)
        return 2
    from monitor.ops.pidfiles import held

    children = ["gateway", *(settings.service_urls() if settings.local_services else [])]
    problems = [p for p in preflight.check(
        settings, for_run=True, held=frozenset(held(settings.data_dir / "run", children)))]
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    sockets = {
        "dashboard": bind(settings.host, settings.port, "MONITOR_PORT"),
    }
    import uvloop

    try:
        return uvloop.run(_main(settings, sockets))
    finally:
        lock.release()


async def _main(settings: Settings, sockets: dict[str, socket.socket]) -> int:
    from monitor.ops.logs import uvicorn_log_config
    from monitor.runtime import create_runtime
    from monitor.storage.users import UserError, ensure_admin
    from monitor.web.app import create_app
    from monitor.web.edge import edge_protocol

    runtime = create_runtime(settings)
    given = settings.admin_password.get_secret_value() if settings.admin_password else ""
    try:
        admin_password = await asyncio.to_thread(
            ensure_admin, runtime.store, password=given or None, audit_key=runtime.keys.audit,
            now=runtime.clock())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ssl: dict[str, Any] = {"ssl_certfile": str(settings.tls_certfile),
                           "ssl_keyfile": str(settings.tls_keyfile)} \
        if settings.tls_certfile else {}
    # proxy_headers=False: X-Forwarded-For from a loopback client would otherwise become the
    # client address, letting anyone on the machine dodge per-IP lockout and forge audit IPs.
    common: dict[str, Any] = {"log_config": uvicorn_log_config(), "server_header": False,
                              "date_header": False, "access_log": False, "lifespan": "on",
                              "proxy_headers": False, "timeout_graceful_shutdown": 5}
    servers = [
        _Server(uvicorn.Config(create_app(runtime), **{**common, **_proxies(settings)}, **ssl,
                               http=edge_protocol(settings))),
    ]
    dataplane = _DataPlane(settings, runtime)
    # Full collections paused the loop 0.1-0.5 s every few seconds at 1,000 probe targets
    # (issue 16): the start-up heap is never garbage, and they now come every few minutes.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await dataplane.publish()
        await runtime.start()
        await dataplane.start()
        _banner(settings, admin_password)
        return await _serve_until(stop, servers, sockets)
    finally:
        try:
            await dataplane.stop()
        finally:
            await runtime.stop()


async def _serve_until(stop: asyncio.Event, servers: list[_Server],
                       sockets: dict[str, socket.socket]) -> int:
    """Serve until a signal (or a server failing); 0 for a clean stop."""
    tasks = [asyncio.create_task(server.serve(sockets=[sock]))
             for server, sock in zip(servers, sockets.values(), strict=True)]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    log.info("shutting down", extra={"event": "shutdown"})
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    failed = [t for t in tasks if t in done and t.exception()]
    return 1 if failed else 0


class _DataPlane:
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


def _proxies(settings: Settings) -> dict[str, Any]:
    """Behind a reverse proxy (TLS termination), believe X-Forwarded-For from it alone."""
    trusted = ",".join(settings.trusted_proxies)
    return {"proxy_headers": True, "forwarded_allow_ips": trusted} if trusted else {}


def _banner(settings: Settings, admin_password: str | None) -> None:
    scheme = "https" if settings.tls_certfile else "http"
    lines = [
        "Secure Failover Monitor is running",
        f"  dashboard: {scheme}://{settings.host}:{settings.port}/",
        f"  gateway:   http://{settings.host}:{settings.gateway_port}/books",
        f"  services:  {', '.join(f'{k}={v}' for k, v in settings.service_urls().items())}",
        f"  data dir:  {settings.data_dir.resolve()}",
    ]
    if admin_password:
        lines += [
            "  first run: created user 'admin'; this password is shown only once:",
            f"initial admin password: {admin_password}",
        ]
    print("\n".join(lines), flush=True)
