"""HAProxy driving: state parsing, the wanted states of a route, drift, and the sync loop
against a fake Runtime API (the process edge)."""

from __future__ import annotations

import pytest

from monitor.gateway.haproxy import Admin, HAProxyError, Server, desired, drift, parse_state
from monitor.gateway.haproxy_sync import HAProxySync, ServiceSyncs
from monitor.gateway.route import Route

URLS = {"v1": "http://a:1", "v2": "http://a:2", "v3": "http://a:3"}
STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl \
srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 books 1 v1 127.0.0.1 2 0 1 1 1 8 2 0 6 0 0 1 - 8001 - 0 0 - - 0
3 books 2 v2 127.0.0.1 0 1 1 1 1 8 2 0 14 0 0 1 - 8002 - 0 0 - - 0
3 books 3 v3 127.0.0.1 2 8 5 1 1 8 2 0 6 0 0 1 - 8003 - 0 0 - - 0
"""


def servers(**admins: str) -> dict[str, Server]:
    return {name: Server(name, int(name[1]), Admin(state), True, 1)
            for name, state in admins.items()}


def route(active: str, fallbacks=(), epoch: int = 0, issued: float = 0.0) -> Route:
    return Route(epoch, active, tuple(fallbacks), URLS, issued)


def test_it_reads_show_servers_state():
    parsed = parse_state(STATE)
    assert parsed == {"v1": Server("v1", 1, Admin.READY, True, 1),
                      "v2": Server("v2", 2, Admin.MAINT, False, 1),
                      "v3": Server("v3", 3, Admin.DRAIN, True, 5)}


def test_it_refuses_an_answer_that_is_not_a_server_state():
    with pytest.raises(HAProxyError):
        parse_state("Unknown command.\n")


@pytest.mark.parametrize("active, fallbacks, wanted", [
    ("v1", ["v2", "v3"], {"v1": "ready", "v2": "ready", "v3": "ready"}),
    ("v1", ["v3"], {"v1": "ready", "v2": "maint", "v3": "ready"}),     # v2 is down
    ("v2", ["v1", "v3"], {"v1": "maint", "v2": "ready", "v3": "ready"}),  # v1 would come first
    ("v3", ["v1", "v2"], {"v1": "maint", "v2": "maint", "v3": "ready"}),
    ("v2", [], {"v1": "maint", "v2": "ready", "v3": "maint"}),
])
def test_it_makes_the_active_version_the_first_ready_server(active, fallbacks, wanted):
    assert desired(route(active, fallbacks), servers(v1="ready", v2="ready", v3="ready")) == \
        wanted


def test_it_lists_drift_as_wanted_and_found():
    found = servers(v1="maint", v2="ready", v3="drain")
    assert drift({"v1": Admin.READY, "v2": Admin.READY, "v3": Admin.MAINT}, found) == {
        "v1": ("ready", "maint"), "v3": ("maint", "drain")}


class FakeAPI:
    """HAProxy's Runtime API as a dict of admin states; ``down`` makes it unreachable."""

    def __init__(self, **admins: str) -> None:
        self.admins = dict(admins)
        self.down = False
        self.commands: list[str] = []

    async def servers(self, backend: str) -> dict[str, Server]:
        if self.down:
            raise HAProxyError("connection refused")
        return servers(**self.admins)

    async def set_state(self, backend: str, server: str, state: Admin) -> None:
        self.commands.append(f"{server} {state.value}")
        self.admins[server] = state.value


class Recorder:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict, str, bool]] = []

    async def __call__(self, action, target, params, outcome, reason, notify) -> None:
        self.rows.append((action, params, outcome, notify))


def make(api: FakeAPI, current: list[Route], now: list[float]):
    recorder = Recorder()
    sync = HAProxySync(api, "books", lambda: current[0], recorder, lambda: now[0],  # type: ignore[arg-type]
                       every=3.0)
    return sync, recorder


async def test_it_applies_a_decision_ready_first_and_audits_no_drift():
    api = FakeAPI(v1="ready", v2="ready", v3="ready")
    current, now = [route("v1", ["v2", "v3"])], [0.0]
    sync, recorder = make(api, current, now)
    await sync.tick()
    assert api.commands == [] and recorder.rows == []
    current[0] = route("v2", ["v3"], epoch=1)
    now[0] = 0.5
    await sync.tick()
    assert api.admins == {"v1": "maint", "v2": "ready", "v3": "ready"}
    assert recorder.rows == []  # the decision itself is audited by the engine
    assert sync.status()["applied_epoch"] == 1


async def test_it_restores_drift_and_audits_it_only_on_the_reconcile_period():
    api = FakeAPI(v1="ready", v2="ready", v3="ready")
    current, now = [route("v1", ["v2", "v3"])], [0.0]
    sync, recorder = make(api, current, now)
    await sync.tick()
    api.admins["v2"] = "maint"  # an operator at the socket
    now[0] = 1.0
    await sync.tick()
    assert api.admins["v2"] == "maint"  # not yet: reconcile every 3 s
    now[0] = 3.5
    await sync.tick()
    assert api.admins["v2"] == "ready"
    assert recorder.rows == [("haproxy.drift", {"corrected": {"v2": ("ready", "maint")}},
                              "ok", False)]


async def test_it_audits_a_change_by_hand_that_a_decision_also_corrects():
    api = FakeAPI(v1="ready", v2="ready", v3="ready")
    current, now = [route("v1", ["v2", "v3"])], [0.0]
    sync, recorder = make(api, current, now)
    await sync.tick()
    api.admins["v3"] = "maint"  # an operator at the socket ...
    current[0] = route("v1", ["v3"], epoch=1)  # ... as v2 leaves the fallbacks
    now[0] = 0.5
    await sync.tick()
    assert api.admins == {"v1": "ready", "v2": "maint", "v3": "ready"}
    assert recorder.rows == [("haproxy.drift", {"corrected": {"v3": ("ready", "maint")}},
                              "ok", False)]  # v2 was the decision's, not drift


async def test_it_reports_an_unreachable_haproxy_once_and_its_return():
    api = FakeAPI(v1="ready", v2="ready", v3="ready")
    current, now = [route("v1", ["v2", "v3"])], [0.0]
    sync, recorder = make(api, current, now)
    api.down = True
    for step in range(5):
        now[0] = step * 4.0
        await sync.tick()
    assert sync.status()["reachable"] is False
    assert [(a, notify) for a, _, _, notify in recorder.rows] == [("haproxy.unreachable", True)]
    api.down = False
    now[0] = 30.0
    await sync.tick()
    assert sync.status()["reachable"] is True
    assert [a for a, _, _, _ in recorder.rows] == ["haproxy.unreachable", "haproxy.reachable"]


class Backends:
    """The Runtime API of an HAProxy with one backend per service (a FakeAPI each)."""

    def __init__(self, **backends: FakeAPI) -> None:
        self.backends = backends

    async def servers(self, backend: str) -> dict[str, Server]:
        if backend not in self.backends:
            raise HAProxyError(f"HAProxy has no servers in backend {backend!r}")
        return await self.backends[backend].servers(backend)

    async def set_state(self, backend: str, server: str, state: Admin) -> None:
        await self.backends[backend].set_state(backend, server, state)


async def test_it_drives_one_backend_per_service_named_like_the_service():
    books, films = FakeAPI(v1="ready", v2="ready", v3="ready"), FakeAPI(v1="ready", v2="ready")
    current, now = [route("v1", ["v2", "v3"])], [0.0]
    recorder = Recorder()
    default = HAProxySync(Backends(books=books, films=films), "books",  # type: ignore[arg-type]
                          lambda: current[0], recorder, lambda: now[0])
    others = {"films": route("v2", ["v1"]), "books2": route("v1")}
    syncs = ServiceSyncs(default, lambda: others)
    await syncs.tick()
    # balance first: the active v2 must be the first ready server of its backend
    assert films.admins == {"v1": "maint", "v2": "ready"} and books.commands == []
    others["films"] = route("v1", [], epoch=1)
    now[0] = 0.5
    await syncs.tick()
    assert films.admins == {"v1": "ready", "v2": "maint"}  # only the film backend moved
    assert books.commands == []
    status = syncs.status()
    assert status["services"]["films"]["applied_epoch"] == 1
    assert status["services"]["books2"]["reachable"] is False  # no such backend: audited
    assert [(a, notify) for a, _, _, notify in recorder.rows] == [("haproxy.unreachable", True)]


async def test_it_never_drives_the_default_backend_for_another_service():
    books = FakeAPI(v1="ready", v2="ready", v3="ready")
    default = HAProxySync(Backends(books=books), "books",  # type: ignore[arg-type]
                          lambda: route("v1", ["v2", "v3"]), Recorder(), lambda: 0.0)
    syncs = ServiceSyncs(default, lambda: {"books": route("v3")})
    await syncs.tick()
    assert books.admins == {"v1": "ready", "v2": "ready", "v3": "ready"}
    assert syncs.syncs == {}
