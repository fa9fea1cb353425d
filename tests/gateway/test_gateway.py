"""The gateway: retry rules as a table, then the ASGI app against httpx.MockTransport backends."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from monitor.gateway import retry
from monitor.gateway.app import create_gateway
from monitor.gateway.headers import forward_headers, response_headers
from monitor.gateway.retry import Failure
from monitor.gateway.transport import UpstreamTransport

URLS = {"v1": "http://v1.test:8001", "v2": "http://v2.test:8002", "v3": "http://v3.test:8003"}


# -- the pure retry rules ----------------------------------------------------------------------

@pytest.mark.parametrize("method, failure, retried", [
    ("POST", Failure("http_5xx", reached=True), False),   # the backend got it: maybe applied
    ("POST", Failure("timeout", reached=True), False),
    ("PATCH", Failure("reset", reached=True), False),
    ("GET", Failure("http_5xx", reached=True), True),
    ("GET", Failure("timeout", reached=True), True),
    ("HEAD", Failure("reset", reached=True), True),
    ("PUT", Failure("http_5xx", reached=True), True),
    ("DELETE", Failure("timeout", reached=True), True),
    ("OPTIONS", Failure("http_5xx", reached=True), True),
    ("get", Failure("http_5xx", reached=True), True),
    ("POST", Failure("refused", reached=False), True),    # never reached: any method
    ("PATCH", Failure("refused", reached=False), True),
    ("POST", Failure("timeout", reached=False), True),    # connect or pool timeout
])
def test_it_retries_by_method_and_whether_the_backend_was_reached(method, failure, retried):
    assert retry.may_retry(method, failure) is retried


@pytest.mark.parametrize("exc, kind, reached", [
    (httpx.ConnectError("refused"), "refused", False),
    (httpx.ConnectTimeout("slow connect"), "timeout", False),
    (httpx.PoolTimeout("pool full"), "busy", False),  # our own load, not the backend
    (httpx.ReadTimeout("slow answer"), "timeout", True),
    (httpx.WriteTimeout("slow upload"), "timeout", True),
    (TimeoutError(), "timeout", True),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), "reset", True),
    (httpx.ReadError("connection reset"), "reset", True),
    (httpx.WriteError("broken pipe"), "reset", True),
])
def test_it_classifies_transport_errors(exc, kind, reached):
    failure = retry.failure_of_error(exc)
    assert (failure.kind, failure.reached) == (kind, reached)


@pytest.mark.parametrize("status, kind", [
    (500, "http_5xx"), (502, "http_5xx"), (503, "http_5xx"), (504, "http_5xx"),
    (200, None), (404, None), (422, None), (501, None), (505, None),
])
def test_it_treats_only_transient_5xx_statuses_as_failures(status, kind):
    failure = retry.failure_of_status(status)
    assert (failure.kind if failure else None) == kind


@pytest.mark.parametrize("candidates, planned", [
    ([], []),
    ([("v1", "http://a"), ("v2", "http://b")], ["v1", "v2"]),
    ([("v1", "http://a"), ("v1", "http://a"), ("v2", "http://b")], ["v1", "v2"]),
    ([("v1", "http://a"), ("v2", "http://a/"), ("v3", "http://c")], ["v1", "v3"]),
    # another replica of a version is another backend: replicas first, then the next version
    ([("v2", "http://b"), ("v2", "http://x"), ("v1", "http://a")], ["v2", "v2", "v1"]),
])
def test_it_never_plans_the_same_backend_twice(candidates, planned):
    assert [v for v, _ in retry.plan(candidates)] == planned


@pytest.mark.parametrize("attempt, draw, delay", [
    (0, 0.0, 0.0), (0, 1.0, 0.01), (1, 1.0, 0.02), (2, 0.5, 0.02), (3, 1.0, 0.08),
    (4, 1.0, 0.1), (20, 1.0, 0.1), (2, 2.0, 0.04), (1, -1.0, 0.0),
])
def test_it_backs_off_with_capped_full_jitter(attempt, draw, delay):
    assert retry.backoff(attempt, draw) == pytest.approx(delay)


# -- headers -----------------------------------------------------------------------------------

def test_it_drops_hop_by_hop_request_headers_and_sets_x_forwarded_for():
    raw = [(b"Host", b"books.example"), (b"Connection", b"keep-alive, X-Secret"),
           (b"Keep-Alive", b"timeout=5"), (b"TE", b"trailers"), (b"Upgrade", b"h2c"),
           (b"Proxy-Authorization", b"Basic eDp5"), (b"Transfer-Encoding", b"chunked"),
           (b"Trailer", b"X-Sum"), (b"X-Secret", b"hop"), (b"Accept", b"application/json"),
           (b"X-Forwarded-For", b"203.0.113.7"), (b"Content-Length", b"3"),
           (b"Forwarded", b"for=6.6.6.6"), (b"X-Real-IP", b"6.6.6.6")]
    out = dict(forward_headers(raw, "10.0.0.5", "https"))
    assert out == {b"accept": b"application/json",
                   b"x-forwarded-for": b"10.0.0.5",
                   b"x-forwarded-proto": b"https", b"x-forwarded-host": b"books.example"}


def test_it_drops_hop_by_hop_response_headers_and_names_the_version():
    raw = [(b"Content-Type", b"application/json"), (b"Connection", b"close, X-Hop"),
           (b"X-Hop", b"1"), (b"Keep-Alive", b"timeout=5"), (b"Transfer-Encoding", b"chunked"),
           (b"Server", b"uvicorn"), (b"X-Served-By", b"forged"), (b"Set-Cookie", b"a=1"),
           (b"Set-Cookie", b"b=2")]
    assert response_headers(raw, "v2") == [
        (b"content-type", b"application/json"), (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"), (b"x-served-by", b"v2")]


# -- the gateway against mock backends ---------------------------------------------------------

class FakeRouter:
    def __init__(self, versions=("v1", "v2", "v3"), *, broken_reports: bool = False):
        self.versions = list(versions)
        self.reports: list[tuple[str, str]] = []
        self.broken_reports = broken_reports

    def route_candidates(self):
        return [(v, URLS[v]) for v in self.versions]

    def report_gateway_failure(self, version, failure):
        self.reports.append((version, failure))
        if self.broken_reports:
            raise RuntimeError("router is having a bad day")


class FakeMetrics:
    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def gateway_request(self, version, outcome):
        self.calls.append((version, outcome))


def backends(behaviour: dict[str, object]):
    """A MockTransport whose hosts v1.test.. act per ``behaviour``: a status code, an exception
    to raise, or a callable(request) -> httpx.Response. Records every request it received."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        version = request.url.host.split(".")[0]
        seen.append(request)
        act = behaviour.get(version, 200)
        if isinstance(act, Exception):
            raise act
        if callable(act):
            result = act(request)
            return on_the_wire(await result if asyncio.iscoroutine(result) else result)
        return on_the_wire(httpx.Response(act, json={"version": version, "path": request.url.path},
                                          headers={"X-Backend": version}))

    return httpx.MockTransport(handler), seen


def on_the_wire(response: httpx.Response) -> httpx.Response:
    """httpx reads a Response built from bytes at once; a real transport's body is a stream."""
    if not response.is_stream_consumed:
        return response
    return httpx.Response(response.status_code, headers=response.headers,
                          stream=httpx.ByteStream(response.content))


def gateway_client(router, behaviour, *, metrics=None, **options):
    transport, seen = backends(behaviour)
    app = create_gateway(router, transport=transport, metrics=metrics, rng=lambda: 0.0,
                         **options)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("192.0.2.9", 5000)),
                               base_url="http://gateway.test")
    return client, seen


async def test_it_forwards_to_the_active_version_and_says_who_served():
    client, seen = gateway_client(FakeRouter(), {})
    async with client:
        response = await client.get("/books/pride%2Dand?q=a%20b&limit=2",
                                    headers={"X-Forwarded-For": "198.51.100.1"})
    assert response.status_code == 200
    assert response.headers["x-served-by"] == "v1"
    assert response.headers["x-backend"] == "v1"
    assert [str(r.url) for r in seen] == ["http://v1.test:8001/books/pride%2Dand?q=a%20b&limit=2"]
    assert seen[0].headers["x-forwarded-for"] == "192.0.2.9"  # the client's claim is dropped
    assert seen[0].headers["host"] == "v1.test:8001"


async def test_it_keeps_the_path_prefix_of_a_version_url():
    class PrefixRouter(FakeRouter):
        def route_candidates(self):
            return [("v1", "http://v1.test:8001/api/")]

    client, seen = gateway_client(PrefixRouter(), {})
    async with client:
        await client.get("/books/moby-dick?x=1")
    assert str(seen[0].url) == "http://v1.test:8001/api/books/moby-dick?x=1"


@pytest.mark.parametrize("method, behaviour, status, served_by, tried, reports, outcome", [
    ("GET", {"v1": 503}, 200, "v2", ["v1", "v2"], [("v1", "http_5xx")], "retried"),
    ("GET", {"v1": 500, "v2": 502}, 200, "v3", ["v1", "v2", "v3"],
     [("v1", "http_5xx"), ("v2", "http_5xx")], "retried"),
    ("GET", {"v1": httpx.ReadTimeout("slow")}, 200, "v2", ["v1", "v2"],
     [("v1", "timeout")], "retried"),
    ("GET", {"v1": httpx.RemoteProtocolError("gone")}, 200, "v2", ["v1", "v2"],
     [("v1", "reset")], "retried"),
    ("POST", {"v1": 503}, 503, "v1", ["v1"], [("v1", "http_5xx")], "failed"),
    ("POST", {"v1": httpx.ReadTimeout("slow")}, 504, None, ["v1"], [("v1", "timeout")],
     "failed"),
    ("POST", {"v1": httpx.RemoteProtocolError("gone")}, 502, None, ["v1"], [("v1", "reset")],
     "failed"),
    ("POST", {"v1": httpx.ConnectError("refused")}, 200, "v2", ["v1", "v2"],
     [("v1", "refused")], "retried"),
    ("PATCH", {"v1": httpx.ConnectTimeout("no SYN-ACK")}, 200, "v2", ["v1", "v2"],
     [("v1", "timeout")], "retried"),
    ("GET", {"v1": 503, "v2": 503, "v3": 504}, 504, "v3", ["v1", "v2", "v3"],
     [("v1", "http_5xx"), ("v2", "http_5xx"), ("v3", "http_5xx")], "failed"),
    ("GET", {"v1": 404}, 404, "v1", ["v1"], [], "ok"),
    ("POST", {}, 200, "v1", ["v1"], [], "ok"),
])
async def test_it_retries_on_the_next_version_by_the_rules(
        method, behaviour, status, served_by, tried, reports, outcome):
    router, metrics = FakeRouter(), FakeMetrics()
    client, seen = gateway_client(router, behaviour, metrics=metrics)
    async with client:
        response = await client.request(method, "/books", content=b'{"description": "whale"}')
    assert response.status_code == status
    assert response.headers.get("x-served-by") == served_by
    assert [r.url.host.split(".")[0] for r in seen] == tried
    assert router.reports == reports
    assert metrics.calls == [(served_by or tried[-1], outcome)]


@pytest.mark.parametrize("versions, behaviour", [
    ([], {}),
    (["v1", "v2"], {"v1": httpx.ConnectError("refused"), "v2": httpx.ConnectError("refused")}),
])
async def test_it_answers_503_json_when_all_versions_are_down(versions, behaviour):
    metrics = FakeMetrics()
    client, _ = gateway_client(FakeRouter(versions), behaviour, metrics=metrics)
    async with client:
        response = await client.get("/books")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "all versions down"
    assert "detail" in response.json()
    assert metrics.calls == [("", "no_backend")]


async def test_it_answers_503_json_when_the_router_itself_fails():
    class BrokenRouter(FakeRouter):
        def route_candidates(self):
            raise RuntimeError("state unavailable")

    client, seen = gateway_client(BrokenRouter(), {})
    async with client:
        response = await client.get("/books")
    assert (response.status_code, response.json()["error"]) == (503, "all versions down")
    assert seen == []


async def test_it_replays_the_buffered_body_on_the_next_version():
    client, seen = gateway_client(FakeRouter(), {"v1": httpx.ConnectError("refused")})
    async with client:
        response = await client.post("/books/search", json={"description": "a whale hunt"})
    assert response.status_code == 200
    assert [json.loads(r.content) for r in seen] == [{"description": "a whale hunt"}] * 2


async def test_it_never_tries_a_version_twice_even_if_listed_twice():
    router = FakeRouter(["v1", "v2", "v1", "v2"])
    client, seen = gateway_client(router, {"v1": 503, "v2": 503})
    async with client:
        response = await client.get("/books")
    assert response.status_code == 503
    assert [r.url.host for r in seen] == ["v1.test", "v2.test"]


@pytest.mark.parametrize("size, declared", [(1001, True), (1001, False), (5000, True)])
async def test_it_refuses_a_body_over_the_limit_with_413(size, declared):
    client, seen = gateway_client(FakeRouter(), {}, max_body=1000)

    async def chunks():
        yield b"x" * size

    async with client:
        response = await client.post("/books/search",
                                     content=b"x" * size if declared else chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "request body too large"
    assert seen == []


async def test_it_accepts_a_body_at_the_limit():
    client, seen = gateway_client(FakeRouter(), {}, max_body=1000)
    async with client:
        response = await client.post("/books/search", content=b"x" * 1000)
    assert response.status_code == 200
    assert len(seen[0].content) == 1000


async def test_it_answers_504_when_the_deadline_passes_across_retries():
    async def slow(request):
        await asyncio.sleep(30)
        return httpx.Response(200)

    router = FakeRouter()
    client, seen = gateway_client(router, {"v1": slow, "v2": slow}, deadline=0.05)
    async with client:
        response = await client.get("/books")
    assert response.status_code == 504
    assert response.json()["error"] == "deadline exceeded"
    assert router.reports[0] == ("v1", "timeout")
    assert "v3.test" not in [r.url.host for r in seen]


async def test_it_keeps_serving_when_reporting_a_failure_raises():
    client, _ = gateway_client(FakeRouter(broken_reports=True), {"v1": 503})
    async with client:
        response = await client.get("/books")
    assert (response.status_code, response.headers["x-served-by"]) == (200, "v2")


async def test_it_drops_hop_by_hop_headers_end_to_end():
    def answer(request):
        return httpx.Response(200, content=b"{}", headers={
            "Connection": "X-Internal", "X-Internal": "secret", "Keep-Alive": "timeout=5",
            "Content-Type": "application/json"})

    client, seen = gateway_client(FakeRouter(), {"v1": answer})
    async with client:
        response = await client.get("/books", headers={"Connection": "X-Hop", "X-Hop": "1",
                                                       "Proxy-Authorization": "Basic eDp5",
                                                       "X-Kept": "yes"})
    assert "x-hop" not in seen[0].headers and "proxy-authorization" not in seen[0].headers
    assert seen[0].headers["x-kept"] == "yes"
    assert "x-internal" not in response.headers and "keep-alive" not in response.headers
    assert response.headers["x-served-by"] == "v1"


async def test_it_passes_cookies_to_the_client_and_keeps_none_itself():
    def answer(request):
        return httpx.Response(200, content=b"{}", headers={"Set-Cookie": "session=abc"})

    transport, seen = backends({"v1": answer})
    app = create_gateway(FakeRouter(), transport=transport)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway.test") as client:
        first = await client.get("/books")
        client.cookies.clear()
        await client.get("/books")
    assert first.headers["set-cookie"] == "session=abc"
    assert "cookie" not in seen[1].headers


async def test_it_streams_a_large_response_before_the_backend_has_finished():
    more = asyncio.Event()
    chunk = b"b" * 200_000

    async def body():
        yield chunk
        await more.wait()  # only sent once the client has the first chunk
        for _ in range(24):
            yield chunk

    def answer(request):
        return httpx.Response(200, content=body(), headers={"Content-Type": "text/plain"})

    transport, _ = backends({"v1": answer})
    app = create_gateway(FakeRouter(), transport=transport)
    received: list[dict] = []

    async def send(message):
        received.append(message)
        if message["type"] == "http.response.body" and message.get("more_body"):
            more.set()

    requests = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive():
        return next(requests)

    scope = {"type": "http", "method": "GET", "path": "/books/big", "raw_path": b"/books/big",
             "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "scheme": "http"}
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    start, *bodies = received
    assert (start["status"], dict(start["headers"])[b"x-served-by"]) == (200, b"v1")
    assert b"transfer-encoding" not in dict(start["headers"])
    assert b"".join(m["body"] for m in bodies) == chunk * 25
    assert len(bodies) > 2 and not bodies[-1].get("more_body", False)


async def test_it_owns_its_transport_from_startup_to_shutdown():
    app = create_gateway(FakeRouter())
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []
    clients: list[httpx.AsyncBaseTransport | None] = []

    async def receive():
        clients.append(app.transport)
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    owned = clients[1]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert clients[0] is None and isinstance(owned, UpstreamTransport)
    assert owned.closed and app.transport is None



@pytest.mark.parametrize("status, raw, kept", [
    (304, [(b"Content-Length", b"120"), (b"ETag", b'"a"')], False),
    (204, [(b"Content-Length", b"0")], False),
    (200, [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"3")], False),
    (200, [(b"Content-Length", b"3")], True),
])
def test_it_drops_a_content_length_that_would_not_frame_the_relayed_body(status, raw, kept):
    names = [name for name, _ in response_headers(raw, "v2", status)]
    assert (b"content-length" in names) is kept
    assert b"x-served-by" in names


@pytest.mark.parametrize("target", ["*", "/../admin", "/books/%2e%2e/admin", "/./books"])
async def test_it_refuses_a_target_that_is_not_a_plain_path(target):
    from monitor.gateway.app import _plain_target

    assert not _plain_target(target.encode())
    assert _plain_target(b"/books?q=a..b")


async def test_it_gives_the_backend_connection_back_when_a_request_is_cancelled():
    import asyncio

    from tests.gateway.test_transport import OK, Backend

    stalled = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"  # small: read in the attempt
    backend = Backend(lambda c, r, req: stalled if c == 0 else OK)
    async with backend as url:
        http = UpstreamTransport(max_connections=1)
        gateway = create_gateway(FakeRouter(), transport=http)
        attempt = asyncio.create_task(
            gateway._attempt(httpx.Request("GET", f"{url}/stalls"), gateway.clock() + 5, 5.0))
        await asyncio.sleep(0.1)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        response, body, failure = await gateway._attempt(httpx.Request("GET", f"{url}/next"),
                                                         gateway.clock() + 5, 5.0)
        await http.aclose()
    assert (response.status_code, body, failure) == (200, b"hello", None)


async def test_it_retries_when_its_own_pool_is_full_but_reports_nothing_against_the_version():
    router = FakeRouter()
    client, seen = gateway_client(router, {"v1": httpx.PoolTimeout("pool full")})
    async with client:
        response = await client.get("/books")
    assert (response.status_code, response.headers["x-served-by"]) == (200, "v2")
    assert router.reports == []


@pytest.mark.parametrize("path, forwarded", [
    ("/books", True), ("/books/moby-dick", True), ("/books/search", True),
    ("/docs", False), ("/openapi.json", False), ("/health", False), ("/chaos/crash", False),
    ("/books/a/b", False), ("/books/", False), ("/booksx", False), ("/books/a%2Fb", False),
    ("/", False),
])
async def test_it_forwards_only_the_book_api(path, forwarded):
    client, seen = gateway_client(FakeRouter(), {})
    async with client:
        response = await client.post(path) if path.endswith("crash") else await client.get(path)
    assert (response.status_code == 404 and response.json()["error"] == "not found") is \
        (not forwarded)
    assert bool(seen) is forwarded


async def test_it_moves_on_from_a_hung_version_after_its_recent_latency_not_the_full_timeout():
    async def hang(request):
        await asyncio.sleep(30)
        return httpx.Response(200)

    router = FakeRouter()
    behaviour: dict[str, object] = {"v1": 200}
    client, _ = gateway_client(router, behaviour, attempt_timeout=5.0, deadline=10.0)
    async with client:
        for _ in range(20):  # v1 answers at once: its p99 is about 0
            assert (await client.get("/books")).headers["x-served-by"] == "v1"
        behaviour["v1"] = hang
        started = asyncio.get_running_loop().time()
        response = await client.get("/books")
        took = asyncio.get_running_loop().time() - started
    assert (response.status_code, response.headers["x-served-by"]) == (200, "v2")
    assert router.reports == [("v1", "timeout")]
    assert took < 5.0  # the floor (0.1 s) bounded the attempt, not attempt_timeout


@contextlib.asynccontextmanager
async def warmed(behaviour: dict[str, object], **options):
    """A gateway whose v1 has answered 20 requests at once (p95 about 0: hedge at 50 ms)."""
    router = FakeRouter()
    client, seen = gateway_client(router, behaviour, attempt_timeout=5.0, deadline=10.0,
                                  **options)
    async with client:
        for _ in range(20):
            assert (await client.get("/books")).headers["x-served-by"] == "v1"
        seen.clear()
        yield client, seen, router


async def test_it_hedges_a_get_to_the_next_version_when_the_first_is_slow():
    behaviour: dict[str, object] = {"v1": 200}
    async def hang(request):
        await asyncio.sleep(30)
        return httpx.Response(200)

    async with warmed(behaviour, hedge=True, attempt_floor=4.0) as (client, seen, router):
        behaviour["v1"] = hang
        response = await client.get("/books")
    assert (response.status_code, response.headers["x-served-by"]) == (200, "v2")
    assert [r.url.host for r in seen] == ["v1.test", "v2.test"]
    assert router.reports == []  # slow is not a failure: nothing reported against v1


async def test_it_does_not_hedge_a_post_or_a_fast_answer():
    async def slow(request):
        await asyncio.sleep(0.2)
        return httpx.Response(200, json={})

    behaviour: dict[str, object] = {"v1": 200}
    async with warmed(behaviour, hedge=True) as (client, seen, _):
        assert (await client.get("/books")).headers["x-served-by"] == "v1"
        behaviour["v1"] = slow
        response = await client.post("/books/search", json={"description": "whale"})
    assert response.headers["x-served-by"] == "v1"
    assert [r.url.host for r in seen] == ["v1.test", "v1.test"]


async def test_it_takes_the_hedge_answer_when_the_first_then_fails():
    async def late_error(request):
        await asyncio.sleep(0.2)
        return httpx.Response(503)

    async def late_ok(request):
        await asyncio.sleep(0.4)
        return httpx.Response(200, json={})

    behaviour: dict[str, object] = {"v1": 200}
    async with warmed(behaviour, hedge=True, attempt_floor=4.0) as (client, seen, router):
        behaviour.update(v1=late_error, v2=late_ok)
        response = await client.get("/books")
    assert (response.status_code, response.headers["x-served-by"]) == (200, "v2")
    assert router.reports == [("v1", "http_5xx")]
