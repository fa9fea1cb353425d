"""Several services in one monitor (monitor.services, monitor.fleet): configuration, one unit
per service, decisions apart, following spec revisions."""

import json

import httpx
import pytest
from sqlmodel import select

from monitor.actor import SYSTEM, Actor
from monitor.config import ConfigError, Settings, load_settings
from monitor.desired.apply import apply
from monitor.desired.spec import ServiceSpec, parse
from monitor.failover.model import Failure, Observation, to_record
from monitor.runtime import create_runtime
from monitor.services import UnknownService, configured, policy_from
from monitor.storage import commands
from monitor.storage.commands import CommandKind
from monitor.storage.store import Incident, Notice, StateRow
from tests import support

BOOKS = "v1=http://v1.test,v2=http://v2.test,v3=http://v3.test"
FILMS = "films:a=http://a.films.test,b=http://b.films.test"
OLGA = Actor("olga", "operator", "127.0.0.1", "pytest", "req-1")


@pytest.mark.parametrize("value, expected", [
    ("", {}),
    (FILMS, {"films": {"a": "http://a.films.test", "b": "http://b.films.test"}}),
    ("films:a=http://x:1,b=http://y:2 ; music:c=http://z:3,d=http://w:4/",
     {"films": {"a": "http://x:1", "b": "http://y:2"},
      "music": {"c": "http://z:3", "d": "http://w:4"}}),
])
def test_it_reads_further_services_from_the_setting(value, expected):
    assert load_settings(extra_services=value, _env_file=None).extra_services == expected


@pytest.mark.parametrize("value, message", [
    ("Films:a=http://x:1,b=http://y:2", "lower-case DNS label"),
    ("films", "expected NAME:v1=URL"),
    ("films:a=http://x:1", "service 'films': at least two versions"),
    ("films:a=ftp://x:1,b=http://y:2", "service 'films': expected NAME=http(s)"),
    ("films:a=http://x:1,b=http://y:2;films:a=http://x:1,b=http://y:2", "given twice"),
    ("-x:a=http://x:1,b=http://y:2", "DNS label"),
])
def test_it_refuses_a_bad_service_setting_naming_it(value, message):
    with pytest.raises(ConfigError, match="MONITOR_EXTRA_SERVICES") as caught:
        load_settings(extra_services=value, _env_file=None)
    assert message in str(caught.value)


SPEC = """\
apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  versions: [{name: v1, url: "http://v1.test"}, {name: v2, url: "http://v2.test"}]
---
apiVersion: v1
kind: Service
metadata: {name: music}
spec:
  versions: [{name: x, url: "http://x.test"}, {name: y, url: "http://y.test"}]
  failover: {fall: 5, rise: 4, cooldownSeconds: 60, intervalSeconds: 3}
"""


def test_it_takes_each_further_spec_document_as_a_service_with_its_own_policy():
    settings = Settings(services=BOOKS, extra_services=FILMS, _env_file=None)
    books, music = parse(SPEC)
    found = configured(settings, [music], books.name)
    assert [(c.name, list(c.urls)) for c in found] == [("films", ["a", "b"]),
                                                       ("music", ["x", "y"])]
    policy = policy_from(settings, tuple(found[1].urls), found[1].failover)
    assert (policy.fall, policy.rise, policy.cooldown, policy.interval) == (5, 4, 60, 3)
    assert policy.down_interval == settings.down_interval  # not given: the setting


@pytest.mark.parametrize("spec, extra, message", [
    (SPEC.replace("name: music", "name: films"), FILMS, "'films' is configured twice"),
    (SPEC.replace("name: music", "name: books"), "", "two documents name the same"),
    (SPEC.replace('{name: y, url: "http://y.test"}', "{name: y, command: [python]}"), "",
     r"music: spec.versions \(y\): only the first document's service runs local commands"),
    (SPEC.replace(', {name: y, url: "http://y.test"}', ""), "",
     "music: spec.versions: at least two versions"),
    (SPEC + "  rollout: {strategy: BlueGreen}\n", "", "music: spec.rollout/autoscale"),
])
def test_it_refuses_a_service_configured_twice_or_run_locally(spec, extra, message):
    settings = Settings(services=BOOKS, extra_services=extra, _env_file=None)
    with pytest.raises((ValueError, ConfigError), match=message):
        books, *others = parse(spec)
        configured(settings, others, books.name)


class Endpoints:
    """Every version at the HTTP edge: /health and the canary answer, or are refused."""

    def __init__(self, settings: Settings):
        self.canary = settings.canary()
        self.down: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.down:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(404)


@pytest.fixture
async def runtime(tmp_path):
    settings = Settings(data_dir=tmp_path, services=BOOKS, extra_services=FILMS,
                        startup_grace=0, cooldown=0, _env_file=None)
    client = httpx.AsyncClient(transport=httpx.MockTransport(Endpoints(settings)))
    clock = support.FakeClock()
    runtime = create_runtime(settings, clock=clock, http_client=client)
    yield runtime
    await client.aclose()
    runtime.watchdog.close()
    runtime.fleet.close()
    runtime.store.dispose()


def test_it_composes_one_unit_per_service_with_the_default_one_reachable_as_before(runtime):
    assert list(runtime.services) == ["books", "films"]
    books, films = runtime.services["books"], runtime.services["films"]
    assert books.watchdog is runtime.watchdog and books.policy is runtime.policy
    assert films.watchdog is not runtime.watchdog
    assert films.policy.versions == ("a", "b") and films.watchdog.service == "films"
    assert runtime.fleet.unit("films") is films and runtime.fleet.unit(None).name == "books"
    with pytest.raises(UnknownService, match="unknown service 'nope'; one of books, films"):
        runtime.fleet.unit("nope")
    with runtime.store.read() as session:
        rows = {r.service: (r.active, r.epoch) for r in session.exec(select(StateRow))}
    assert rows == {"books": ("v1", 0), "films": ("a", 0)}


def test_it_gives_the_status_and_the_routes_of_each_service(runtime):
    assert runtime.status()["service"] == "books"
    films = runtime.status("films")
    assert (films["service"], films["active"]) == ("films", "a")
    assert [v["name"] for v in films["versions"]] == ["a", "b"]
    routes = runtime.service_routes()
    assert set(routes) == {"books", "films"}
    epoch, candidates, urls = routes["films"]
    assert (epoch, candidates[0], dict(urls)["b"]) == (0, ("a", "http://a.films.test"),
                                                      "http://b.films.test")
    with pytest.raises(UnknownService):
        runtime.status("nope")


async def fail(watchdog, version, clock, times=3):
    for _ in range(times):
        clock.advance(1)
        await watchdog.observe(Observation(version=version, ok=False, at=clock(),
                                           failure=Failure.REFUSED))


async def succeed(watchdog, version, clock, times=2):
    for _ in range(times):
        clock.advance(1)
        await watchdog.observe(Observation(version=version, ok=True, at=clock(),
                                           latency_ms=1.0))


async def test_it_fails_one_service_over_while_another_has_an_open_incident(runtime):
    clock = runtime.clock
    books, films = runtime.watchdog, runtime.fleet.unit("films").watchdog
    for version in ("a", "b"):
        await fail(films, version, clock)
    assert films.state.incident  # all of films is down
    assert runtime.fleet.unit("films").summary(clock())["incident"] == "all_down"
    for version in ("v1", "v2", "v3"):
        await succeed(books, version, clock)
    await fail(books, "v1", clock)
    await succeed(books, "v2", clock, times=1)  # the confirming probe of the target
    assert (books.state.active, books.state.epoch) == ("v2", 1)
    assert (films.state.active, films.state.epoch) == ("a", 0)
    with runtime.store.read() as session:
        incidents = [(i.service, i.closed_at) for i in session.exec(select(Incident))]
        notices = {n.service: n for n in session.exec(select(Notice))
                   if n.kind in ("failover", "all_down")}
    assert incidents == [("films", None)]
    assert notices["books"].subject.startswith("books: Failover v1 -> v2")
    assert notices["films"].subject.startswith("films: All versions down")
    assert json.loads(notices["films"].payload)["service"] == "films"
    switches = support.audit_rows(runtime.store, "failover.automatic")
    assert [json.loads(r.params)["service"] for r in switches] == ["books"]


async def test_it_acts_on_the_service_named(runtime):
    result = await runtime.actions("films").failover(OLGA, "b", reason="drill", force=True)
    assert result.ok, result.message
    assert runtime.fleet.unit("films").watchdog.state.active == "b"
    assert runtime.watchdog.state.active == "v1"
    (row,) = support.audit_rows(runtime.store, "failover.manual")
    assert (row.target, json.loads(row.params)["service"]) == ("b", "films")
    assert runtime.actions(None) is runtime
    with pytest.raises(UnknownService):
        runtime.actions("nope")


class Following:
    """A follower's view of the lease: another monitor leads."""

    is_leader = False


class FollowingAnother(Following):
    holder = "monitor-b"


async def test_it_queues_a_followers_action_on_another_service_for_the_leader(runtime):
    leader = runtime.leadership
    runtime.leadership = FollowingAnother()
    queued = await runtime.actions("films").failover(OLGA, "b", reason="drill", force=True)
    assert queued.ok and "queued for the leader" in queued.message
    assert runtime.fleet.unit("films").watchdog.state.active == "a"  # a follower never acts
    runtime.leadership = leader
    assert await runtime.duties.apply_commands() == 1
    assert runtime.fleet.unit("films").watchdog.state.active == "b"
    assert runtime.watchdog.state.active == "v1"
    (row,) = support.audit_rows(runtime.store, "failover.manual")
    assert (row.actor, json.loads(row.params)["service"]) == (OLGA.name, "films")


async def test_it_refuses_a_queued_action_on_a_service_the_leader_does_not_have(runtime):
    command = commands.queue(runtime.store, CommandKind.PAUSE, {"reason": "x", "service": "gone"},
                             actor="cli:olga", role="admin", source_ip="", user_agent="cli",
                             queued_by="", now=runtime.clock())
    assert await runtime.duties.apply_commands() == 1
    row = commands.get(runtime.store, command)
    assert row is not None and row.result.startswith("refused: unknown service 'gone'")
    assert not runtime.watchdog.state.paused


async def test_it_shows_a_followers_services_as_the_leader_wrote_them(runtime):
    films = runtime.fleet.unit("films").watchdog
    with runtime.store.write() as session:  # the leader switched films to b
        runtime.store.save_state(session, {**to_record(films.state), "active": "b",
                                           "epoch": 3}, expected_epoch=0, now=1,
                                 service="films")
    await runtime.fleet.follow()
    assert films.state.active == "a"  # leading: its own state stands
    runtime.leadership = Following()
    await runtime.fleet.follow()
    assert (films.state.active, films.state.epoch) == ("b", 3)
    assert runtime.watchdog.state.active == "v1"


def further(name: str, versions: str, extra: str = "") -> ServiceSpec:
    (books, spec) = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: books}\n"
        "spec: {versions: [{name: v1, url: 'http://v1.test'}, {name: v2, url: 'http://v2.test'}]}\n"
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n"
        f"  versions: [{versions}]\n{extra}")
    return spec


def reconciled(runtime) -> list[tuple[str, str, str]]:
    return [(r.target, r.outcome, r.reason)
            for r in support.audit_rows(runtime.store, "spec.reconcile")]


async def test_it_follows_a_revision_that_adds_changes_and_removes_services(runtime):
    music = further("music", "{name: x, url: 'http://x.test'}, {name: y, url: 'http://y.test'}")
    await runtime.fleet.reconcile([music])
    assert list(runtime.services) == ["books", "films", "music"]
    assert runtime.fleet.unit("music").policy.versions == ("x", "y")

    slower = further("music", "{name: x, url: 'http://x.test'}, {name: z, url: 'http://z.test'}",
                     "  failover: {cooldownSeconds: 99}\n")
    await runtime.fleet.reconcile([slower])
    unit = runtime.fleet.unit("music")
    assert (unit.policy.versions, unit.policy.cooldown) == (("x", "z"), 99)
    assert unit.watchdog.state.active == "x"

    await runtime.fleet.reconcile([])
    assert list(runtime.services) == ["books", "films"]  # the setting's films stays
    assert reconciled(runtime) == [("music", "ok", "service added"),
                                   ("music", "ok", "service changed"),
                                   ("music", "ok", "the spec no longer has this service")]
    await runtime.fleet.stop()


async def test_it_defers_a_revision_that_removes_a_services_active_version(runtime):
    await runtime.fleet.reconcile([further(
        "music", "{name: x, url: 'http://x.test'}, {name: y, url: 'http://y.test'}")])
    without_x = further("music", "{name: y, url: 'http://y.test'}, {name: z, url: 'http://z.test'}")
    await runtime.fleet.reconcile([without_x])
    await runtime.fleet.reconcile([without_x])  # audited once, not on every sync
    assert runtime.fleet.unit("music").policy.versions == ("x", "y")
    assert reconciled(runtime)[1:] == [
        ("music", "deferred", "the revision removes x, the active version of music: "
                              "fail music over first")]
    await runtime.fleet.stop()


async def test_it_refuses_a_revision_naming_a_service_twice_and_changes_nothing(runtime):
    films = further("films", "{name: x, url: 'http://x.test'}, {name: y, url: 'http://y.test'}")
    await runtime.fleet.reconcile([films])
    assert runtime.fleet.unit("films").policy.versions == ("a", "b")
    ((target, outcome, reason),) = reconciled(runtime)
    assert (outcome, "'films' is configured twice" in reason) == ("refused", True)


@pytest.mark.parametrize("failover, message", [
    ("{intervalSeconds: 0.5}", "the intervals must be above MONITOR_TIMEOUT (1.0)"),
    ("{intervalSeconds: 2, fastIntervalSeconds: 3}", "fastIntervalSeconds at most"),
])
async def test_it_refuses_a_policy_whose_intervals_do_not_fit_the_timeout(runtime, failover,
                                                                          message):
    music = further("music", "{name: x, url: 'http://x.test'}, {name: y, url: 'http://y.test'}",
                    f"  failover: {failover}\n")
    await runtime.fleet.reconcile([music])
    assert "music" not in runtime.services
    ((target, outcome, reason),) = reconciled(runtime)
    assert (target, outcome) == ("music", "refused") and message in reason


async def test_it_starts_a_service_an_applied_revision_adds(runtime):
    text = SPEC.replace('"http://v1.test"}, {name: v2, url: "http://v2.test"}',
                        '"http://v1.test"}, {name: v2, url: "http://v2.test"}, '
                        '{name: v3, url: "http://v3.test"}')
    apply(runtime.store, runtime.keys.audit, text, who=SYSTEM, now=runtime.clock())
    await runtime.desired.sync()
    assert list(runtime.services) == ["books", "films", "music"]
    assert runtime.fleet.unit("music").policy.fall == 5
    await runtime.desired.sync()  # the same revision again: nothing more
    assert [r.reason for r in support.audit_rows(runtime.store, "spec.reconcile")
            if r.target == "music"] == ["service added"]
    await runtime.fleet.stop()
    await runtime.desired.stop()


def test_it_shares_one_in_flight_probe_limit_across_services(runtime):
    assert runtime.fleet.unit("films").scheduler.slots is runtime.scheduler.slots


@pytest.mark.parametrize("service, version, hurried", [
    ("films", "b", ("films", "b")),
    (None, "v2", ("books", "v2")),
    ("books", "v3", ("books", "v3")),
    ("films", "v1", None),  # not a version of films
    ("nope", "b", None),
])
def test_it_takes_gateway_failures_as_evidence_of_the_service_named(runtime, service, version,
                                                                    hurried):
    runtime.fleet.report_failure(service, version, "refused")
    seen = {name: unit.watchdog.hurry for name, unit in runtime.services.items()}
    assert seen == {"books": set(), "films": set(), **(
        {hurried[0]: {hurried[1]}} if hurried else {})}


def test_it_takes_a_gateway_failure_naming_a_service_through_the_runtime(runtime):
    runtime.report_gateway_failure("a", "refused", service="films")
    runtime.report_gateway_failure("v2", "refused")
    assert runtime.fleet.unit("films").watchdog.hurry == {"a"}
    assert runtime.watchdog.hurry == {"v2"}
