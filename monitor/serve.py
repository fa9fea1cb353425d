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
import signal
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

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
    from monitor.dataplane import DataPlane

    dataplane = DataPlane(settings, runtime)
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
