"""`python -m monitor gateway`: the client gateway as its own process.

It follows the monitor's route files, one per service (:mod:`monitor.gateway.services`), serves
the book API of each service (the default at ``/books``, another at ``/NAME/books``) on
``MONITOR_GATEWAY_PORT`` with the limits of :mod:`monitor.gateway.server`, and keeps serving
the last route while the monitor is down. With ``MONITOR_GATEWAY_WORKERS`` above 1 it forks
that many workers, each with its own SO_REUSEPORT socket (the kernel spreads connections),
and restarts a worker that dies. SIGTERM/SIGINT: stop accepting, finish requests in flight
(up to 5 s), exit 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from monitor.config import Settings
from monitor.gateway.app import create_gateway
from monitor.gateway.evidence import P99_US
from monitor.gateway.route import PURPOSE
from monitor.gateway.server import GatewayServer, Limits, listen
from monitor.gateway.services import make_routes

log = logging.getLogger("monitor.gateway")
GRACE_S = 5.0


def limits_from(settings: Settings) -> Limits:
    return Limits(read_timeout=settings.gateway_read_timeout,
                  max_header=settings.gateway_max_header, max_body=settings.gateway_max_body,
                  per_ip=settings.gateway_conns_per_ip, keepalive=settings.gateway_keepalive)


def run_gateway(settings: Settings) -> int:
    from monitor.ops.logs import configure_logging
    from monitor.storage.keys import load_keys

    configure_logging()
    key = load_keys(settings, create=False).derive(PURPOSE)
    workers = settings.gateway_workers
    try:
        sockets = [listen(settings.host, settings.gateway_port, reuse_port=workers > 1)
                   for _ in range(workers)]
    except OSError as exc:
        print(f"error: MONITOR_GATEWAY_PORT: cannot listen on {settings.host}:"
              f"{settings.gateway_port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"gateway listening on http://{settings.host}:{settings.gateway_port}/books "
          f"({workers} worker{'s' if workers > 1 else ''})", flush=True)
    if workers == 1:
        return _serve_one(settings, key, sockets[0])
    return _supervise_workers(settings, key, sockets)


def _serve_one(settings: Settings, key: bytes, sock: socket.socket) -> int:
    import uvloop

    return uvloop.run(_serve(settings, key, sock))


async def _serve(settings: Settings, key: bytes, sock: socket.socket) -> int:
    routes = make_routes(settings.data_dir, key, time.time)
    routes.load()
    outcomes = Outcomes()
    app = create_gateway(routes.default, max_body=settings.gateway_max_body, metrics=outcomes,
                         attempt_timeout=settings.gateway_attempt_max,
                         hedge=settings.gateway_hedge, balance=settings.gateway_balance,
                         services=routes.table, service_metrics=outcomes.for_service)
    outcomes.quantiles = lambda version: app.timeouts.quantiles(version, app.clock())
    server = GatewayServer(app, limits_from(settings))
    await server.start(sock)
    following = asyncio.create_task(routes.run())
    counting = asyncio.create_task(outcomes.run(routes.report_counts))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown(GRACE_S)
    for task in (following, counting):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    outcomes.flush(routes.report_counts)
    await app.aclose()
    return 0


class Outcomes:
    """Request outcomes counted here and sent to the monitor once a second (its metrics), with
    each answering version's recent p99 in microseconds (outcome ``P99_US``: a rollout's
    analysis compares the canary's with the stable version's). Another service's outcomes are
    counted apart (:meth:`for_service`) and sent under its name, without p99."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.quantiles: Callable[[str], tuple[float, float] | None] = lambda version: None
        self.services: dict[str, Outcomes] = {}

    def for_service(self, service: str) -> Outcomes:
        counted = self.services.get(service)
        if counted is None:
            counted = self.services[service] = Outcomes()
        return counted

    def gateway_request(self, version: str, outcome: str) -> None:
        self.counts[version, outcome] += 1

    def take(self) -> list[tuple[str, str, int]]:
        taken = [(v, o, n) for (v, o), n in self.counts.items()]
        for version in sorted({v for v, _ in self.counts}):
            known = self.quantiles(version)
            if known is not None:
                taken.append((version, P99_US, max(1, min(10**8, round(known[1] * 1e6)))))
        self.counts.clear()
        return taken

    def flush(self, send: Callable[[list[tuple[str, str, int]], str], None]) -> None:
        """Send what was counted: ``send(counts, service)``, the default's under ``""``."""
        if self.counts:
            send(self.take(), "")
        for service, counted in self.services.items():
            if counted.counts:
                send(counted.take(), service)

    async def run(self, send: Callable[[list[tuple[str, str, int]], str], None]) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.flush(send)


def _supervise_workers(settings: Settings, key: bytes, sockets: list[socket.socket]) -> int:
    """Fork one worker per socket; restart a worker that dies; SIGTERM stops them all."""
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    workers: dict[int, socket.socket] = {}
    for sock in sockets:
        workers[_fork(settings, key, sock)] = sock
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid in workers and not stopping:
            sock = workers.pop(pid)
            log.warning("gateway worker %d exited (%s); starting another", pid, status)
            time.sleep(0.1)
            workers[_fork(settings, key, sock)] = sock
    return 0


def _fork(settings: Settings, key: bytes, sock: socket.socket) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        code = _serve_one(settings, key, sock)
    finally:
        os._exit(code)
