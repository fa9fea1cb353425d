"""The client gateway: a stable endpoint that forwards book requests to the active version.

``create_gateway(router)`` returns a plain ASGI app (with lifespan). Per request it asks the
router for candidates (active first, then the other UP versions), forwards to the first, and
retries on the next one by the rules in :mod:`monitor.gateway.retry`. The request body is
buffered (up to ``max_body``) so it can be replayed; the response body is streamed. Every
failed attempt is reported to the router as passive evidence; the gateway never fails over on
its own. Answers the gateway makes itself are JSON: 413 (body too large), 408 (body not received
in time), 502/504 (the backend broke or timed out), 503 (all versions down).

Only the book API is forwarded (``/books``, ``/books/{id}``, ``/books/search``); any other
path is answered 404 by the gateway itself, so a service's /docs, /health or /chaos never
reach the public side. Several services (:mod:`monitor.gateway.services`): the default one at
``/books``, another one NAME at ``/NAME/books...`` with ``/NAME`` stripped before forwarding
(``services`` maps NAME to its router; one dict lookup on the first path segment); an unknown
NAME is 404. Each service has its own router, latency history and outcome counts.

The deadline bounds everything up to the response headers, retries and back-off included; once
a response has started, its body is streamed with ``attempt_timeout`` between chunks. An
attempt that could still be retried elsewhere (idempotent method, another backend left) gets
its own, shorter timeout from the version's recent latency (:mod:`monitor.gateway.timing`), so
a hung version costs a client about p99 x 4 instead of ``attempt_timeout``. Backend
traffic goes through the lean keep-alive pools of :mod:`monitor.gateway.transport` (created
at lifespan startup, closed at shutdown), with no httpx model on the way (:mod:`.calls`);
any other httpx transport may be passed in instead (tests pass ``httpx.MockTransport``).
The backend's Date header is passed on.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import anyio
import httpx

from monitor.gateway import retry
from monitor.gateway.balance import Balance, order
from monitor.gateway.calls import Call, Outcome, Reply, Sender
from monitor.gateway.headers import forward_headers, response_headers
from monitor.gateway.hedge import race
from monitor.gateway.lanes import Lane, Lanes, Metrics, Router, book_api
from monitor.gateway.retry import Failure
from monitor.gateway.timing import AttemptTimeouts
from monitor.gateway.transport import Answer, UpstreamTransport

log = logging.getLogger(__name__)

SMALL_BODY = 64 * 1024  # responses up to this size are read at once instead of streamed

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def new_transport(*, max_connections: int = 128) -> httpx.AsyncBaseTransport:
    """The pooled backend transport: at most ``max_connections`` per version, keep-alive
    shorter than a backend's 5 s (so a backend never closes a connection just as it is
    reused). Requests go to the transport directly, not through an httpx.AsyncClient: no
    cookies kept, no redirects followed, no auth, and none of the client's per-request cost."""
    return UpstreamTransport(max_connections=max_connections, keepalive_expiry=4.0)


class _BodyTooLarge(Exception):
    pass


class Gateway:
    """The ASGI app; see the module docstring. Built by :func:`create_gateway`."""

    def __init__(self, router: Router, *, transport: httpx.AsyncBaseTransport | None,
                 deadline: float,
                 attempt_timeout: float, max_body: int, metrics: Metrics | None,
                 rng: Callable[[], float], clock: Callable[[], float],
                 timeouts: AttemptTimeouts, hedge: bool,
                 balance: Balance = Balance.LEAST_OUTSTANDING,
                 services: Mapping[bytes, Router] | None = None,
                 service_metrics: Callable[[str], Metrics] | None = None) -> None:
        self.router = router
        self.transport = transport
        self._owns_transport = transport is None
        self.deadline = deadline
        self.attempt_timeout = attempt_timeout
        self.max_body = max_body
        self.metrics = metrics
        self.rng = rng
        self.clock = clock
        self.timeouts = timeouts
        self.hedge = hedge
        self.balance = balance
        self.sender = Sender(attempt_timeout, SMALL_BODY)
        self.outstanding: collections.Counter[str] = collections.Counter()
        self.default = Lane("", router, timeouts, metrics)
        self.lanes = Lanes(services if services is not None else {}, service_metrics,
                           lambda: AttemptTimeouts(floor=timeouts.floor, ceiling=timeouts.ceiling))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._proxy(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def aclose(self) -> None:
        """Close the backend transport if the gateway created it."""
        if self._owns_transport and self.transport is not None:
            await self.transport.aclose()
            self.transport = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.transport is None:
                    self.transport = new_transport()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.transport is None:  # mounted without lifespan: create it on first use
            self.transport = new_transport()
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        if book_api(path):
            lane = self.default
        else:
            found = self.lanes.find(path)
            if isinstance(found, dict):
                await _send_json(send, 404, found)
                return
            lane, path = found
        deadline = self.clock() + self.deadline
        try:
            async with asyncio.timeout(self.deadline):
                body = await self._read_body(scope, receive)
        except _BodyTooLarge:
            await _send_json(send, 413, {"error": "request body too large",
                                         "detail": f"the limit is {self.max_body} bytes"})
            return
        except TimeoutError:
            await _send_json(send, 408, {"error": "request body not received in time",
                                         "detail": f"deadline {self.deadline:g} s"})
            return
        if body is None:  # the client went away
            return
        method: str = scope["method"]
        headers = forward_headers(scope.get("headers", []), (scope.get("client") or [None])[0],
                                  scope.get("scheme", "http"))
        target = path
        if scope.get("query_string"):
            target = target + b"?" + scope["query_string"]
        if not _plain_target(target):
            await _send_json(send, 400, {"error": "bad request target",
                                         "detail": "origin-form path without dot segments"})
            return

        try:
            backends = order(retry.plan(lane.router.route_candidates()),
                             self.balance, self.outstanding)
        except Exception:  # a broken router must not turn into a bare 500
            log.exception("route_candidates failed")
            backends = []
        failures: list[tuple[str, Failure]] = []
        out_of_time = False
        delay = 0.0
        retryable = method.upper() in retry.IDEMPOTENT_METHODS
        hedge = self.hedge and retryable and len(backends) > 1

        def attempt(at: int) -> tuple[str, Awaitable[Outcome]]:
            version, base_url = backends[at]
            limit = lane.timeouts.timeout_for(version, self.clock()) \
                if retryable and at < len(backends) - 1 else self.attempt_timeout
            return version, self._attempt(Call(method, base_url, target, headers, body),
                                          deadline, limit)

        index = 0
        while index < len(backends):
            if delay:
                await asyncio.sleep(delay)
            started = self.clock()
            if index == 0 and hedge:
                index, started, (response, small_body, failure), lost = await race(
                    attempt, lane.timeouts.hedge_after(backends[0][0], started), self.clock,
                    self._drop)
                for version, lost_failure in lost:
                    self._report(lane, version, lost_failure)
                    failures.append((version, lost_failure))
                version = backends[index][0]
            else:
                version, pending = attempt(index)
                response, small_body, failure = await pending
            if failure is None:
                assert response is not None
                lane.timeouts.observe(version, self.clock() - started, self.clock())
                self._count(lane, version, "retried" if failures else "ok")
                await self._relay(response, small_body, lane, version, send)
                return
            self._report(lane, version, failure)
            failures.append((version, failure))
            again = index < len(backends) - 1 and retry.may_retry(method, failure)
            if again:
                delay = retry.backoff(len(failures) - 1, self.rng())
                if deadline - self.clock() <= delay:
                    again, out_of_time = False, True
            if response is not None and not again:  # the last 5xx answer goes back as it is
                self._count(lane, version, "failed")
                await self._relay(response, small_body, lane, version, send)
                return
            if response is not None:
                await _close(response)
            if not again:
                out_of_time = out_of_time or deadline <= self.clock()
                break
            index += 1
        await self._fail(send, lane, backends, failures, out_of_time=out_of_time)

    @staticmethod
    async def _drop(outcome: Outcome) -> None:
        if outcome[0] is not None:
            await _close(outcome[0])

    async def _attempt(self, call: Call | httpx.Request, deadline: float, limit: float
                       ) -> Outcome:
        """Send one request within the deadline and ``limit`` seconds: (response, its body
        when small, failure).
        A small body is read here, so a backend dying mid-answer is still a retryable failure;
        a response with a retryable status comes back open next to its failure."""
        response = None
        assert self.transport is not None
        base = call.base_url if isinstance(call, Call) else ""
        self.outstanding[base] += 1
        try:
            async with asyncio.timeout(max(0.0, min(limit, deadline - self.clock()))):
                response = await self.sender.send(self.transport, call)
            return response, response.content, retry.failure_of_status(response.status_code)
        except (httpx.HTTPError, TimeoutError) as exc:
            if response is not None:
                await _close(response)
            return None, None, retry.failure_of_error(exc)
        except BaseException:  # cancelled: give the pool slot back before going
            if response is not None:
                await _close(response)
            raise
        finally:
            self.outstanding[base] -= 1

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _BodyTooLarge
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _relay(self, response: Reply, body: bytes | None, lane: Lane, version: str,
                     send: Send) -> None:
        """Send the backend's response to the client; ``body`` when already read, else the
        body is streamed from the backend."""
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": response_headers(response.headers, version,
                                                    response.status_code)})
            if body is not None:
                await send({"type": "http.response.body", "body": body})
                return
            try:
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as exc:
                # Too late to retry; raising makes the server abort the connection, so the
                # client sees a truncated body instead of a complete-looking one.
                self._report(lane, version, retry.failure_of_error(exc))
                raise
            await send({"type": "http.response.body", "body": b""})
        finally:
            await _close(response)

    async def _fail(self, send: Send, lane: Lane, backends: list[tuple[str, str]],
                    failures: list[tuple[str, Failure]],
                    *, out_of_time: bool) -> None:
        detail = [{"version": v, "failure": f.kind, "detail": f.detail} for v, f in failures]
        last_version = failures[-1][0] if failures else ""
        if not backends:
            self._count(lane, "", "no_backend")
            await _send_json(send, 503, {"error": "all versions down",
                                         "detail": "no version is up"})
        elif out_of_time:
            self._count(lane, last_version, "failed")
            await _send_json(send, 504, {"error": "deadline exceeded",
                                         "detail": f"no answer within {self.deadline:g} s",
                                         "attempts": detail})
        elif not any(f.reached for _, f in failures):
            self._count(lane, "", "no_backend")
            await _send_json(send, 503, {"error": "all versions down", "detail": detail})
        else:
            last = failures[-1][1]
            self._count(lane, last_version, "failed")
            status = 504 if last.kind == retry.TIMEOUT else 502
            error = "upstream timeout" if status == 504 else "bad gateway"
            await _send_json(send, status, {"error": error, "detail": detail})

    def _report(self, lane: Lane, version: str, failure: Failure) -> None:
        log.debug("gateway attempt on %s failed: %s (%s)", version, failure.kind, failure.detail)
        if failure.kind == retry.BUSY:
            return  # our own pool was full: no evidence against the version
        try:
            lane.router.report_gateway_failure(version, failure.kind)
        except Exception:  # passive evidence must never break a client request
            log.exception("report_gateway_failure failed")

    def _count(self, lane: Lane, version: str, outcome: str) -> None:
        if lane.metrics is not None:
            try:
                lane.metrics.gateway_request(version, outcome)
            except Exception:
                log.exception("gateway metrics hook failed")


async def _close(response: Reply) -> None:
    if isinstance(response, Answer) and response.settled:
        return  # its body was read whole and its connection is back in the pool
    with anyio.CancelScope(shield=True):  # also when the client request was cancelled
        await response.aclose()


def _plain_target(target: bytes) -> bool:
    """An origin-form target ("/path?query") whose path has no "." or ".." segment, so it
    can neither be `*` nor climb out of a service URL's path prefix."""
    path = target.split(b"?", 1)[0]
    segments = path.replace(b"%2e", b".").replace(b"%2E", b".").split(b"/")
    return target.startswith(b"/") and not any(seg in (b".", b"..") for seg in segments)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


def create_gateway(router: Router, *, transport: httpx.AsyncBaseTransport | None = None,
                   deadline: float = 10.0, attempt_timeout: float = 2.0,
                   max_body: int = 1_000_000, metrics: Metrics | None = None,
                   rng: Callable[[], float] = random.random,
                   clock: Callable[[], float] = time.monotonic,
                   attempt_floor: float = 0.1, hedge: bool = False,
                   balance: Balance = Balance.LEAST_OUTSTANDING,
                   services: Mapping[bytes, Router] | None = None,
                   service_metrics: Callable[[str], Metrics] | None = None) -> Gateway:
    """Build the gateway ASGI app. Without ``transport`` it creates its pooled transport at
    lifespan startup (or on first request when run without lifespan), closed at shutdown."""
    return Gateway(router, transport=transport, deadline=deadline, attempt_timeout=attempt_timeout,
                   max_body=max_body, metrics=metrics, rng=rng, clock=clock,
                   timeouts=AttemptTimeouts(floor=min(attempt_floor, attempt_timeout),
                                            ceiling=attempt_timeout), hedge=hedge,
                   balance=balance, services=services, service_metrics=service_metrics)
