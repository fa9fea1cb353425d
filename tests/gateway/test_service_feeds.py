"""One route feed per service over real files: each followed, persisted, ordered and refused
on its own; removals; the per-service evidence datagrams; the runtime adapter."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import replace

import pytest

from monitor.gateway import evidence
from monitor.gateway.feed import RoutePublisher, service_file
from monitor.gateway.offer import other_services, service_evidence
from monitor.gateway.process import Outcomes
from monitor.gateway.route import Removal, RouteError, decode, decode_entry, encode, newer
from monitor.gateway.services import ServiceRoutes
from tests.gateway.test_route import KEY, route


def film(epoch: int, active: str = "v1", issued: float = 100.0, service: str = "films"):
    return replace(route(epoch, active, issued=issued), service=service)


class Feeds:
    """A publisher with a default route and services to offer, changed by the test."""

    def __init__(self, data_dir, **offered):
        self.default = route(0)
        self.offered = dict(offered)
        self.now = 1000.0
        self.publisher = RoutePublisher(data_dir, KEY, lambda: self.default,
                                        services=lambda: self.offered, clock=lambda: self.now)

    def publish(self) -> None:
        asyncio.run(self.publisher.publish())


def held(routes: ServiceRoutes) -> dict[bytes, tuple[int, str]]:
    return {name: (f.route.epoch, f.route.active) for name, f in routes.table.items()}


@pytest.mark.parametrize("name, valid", [
    ("films", True), ("a", True), ("tv-2", True), ("books", False), ("Films", False),
    ("-x", False), ("x-", False), ("a/b", False), ("..", False), ("x" * 64, False),
])
def test_it_accepts_only_dns_labels_other_than_books_as_service_names(name, valid):
    signed = encode(film(1, service=name), KEY)  # signed with the right key all the same
    if valid:
        assert decode_entry(signed, KEY).service == name
    else:
        with pytest.raises(RouteError, match="service must be a service name"):
            decode_entry(signed, KEY)


def test_it_signs_the_service_name_and_leaves_the_default_route_as_it_was():
    assert b"service" not in encode(route(1), KEY)
    signed = encode(film(1), KEY)
    assert decode_entry(signed, KEY) == film(1)
    with pytest.raises(RouteError, match="mac"):
        decode_entry(signed.replace(b'"films"', b'"music"'), KEY)


@pytest.mark.parametrize("candidate, held_entry, applied", [
    (film(1, issued=50), Removal("films", 3, 40.0), True),    # re-added after its removal
    (film(5, issued=30), Removal("films", 3, 40.0), False),   # issued before the removal
    (Removal("films", 3, 200.0), film(3), True),
    (Removal("films", 2, 200.0), film(3), False),             # an older epoch
])
def test_it_orders_removals_like_routes_and_lets_a_later_route_bring_a_service_back(
        candidate, held_entry, applied):
    assert newer(candidate, held_entry) is applied


def test_it_publishes_each_service_in_its_own_file_and_routes_it(tmp_path):
    feeds = Feeds(tmp_path, films=film(2, "v2"), tv=film(0, service="tv"))
    feeds.publish()
    assert decode(service_file(tmp_path, "films").read_bytes(), KEY).service == "films"
    routes = ServiceRoutes(tmp_path, KEY)
    routes.load()
    assert routes.default.route is not None and routes.default.route.epoch == 0
    assert held(routes) == {b"films": (2, "v2"), b"tv": (0, "v1")}
    assert os.stat(tmp_path / "routes").st_mode & 0o077 == 0


def test_it_applies_each_services_epochs_on_its_own(tmp_path):
    feeds = Feeds(tmp_path, films=film(3, "v2"))
    feeds.publish()
    routes = ServiceRoutes(tmp_path, KEY)
    routes.load()
    feeds.default = route(1, "v3", issued=101)  # the books move on meanwhile
    feeds.publish()
    service_file(tmp_path, "films").write_bytes(encode(film(2, "v3", issued=900), KEY))
    assert routes.poll() is True
    assert held(routes) == {b"films": (3, "v2")}  # the older epoch of films refused
    assert routes.default.route is not None and routes.default.route.active == "v3"
    assert any("epoch 2 is older than the held epoch 3" in r
               for r in routes.followers["films"].refused)
    feeds.offered["films"] = film(4, "v3", issued=101)
    feeds.publish()
    routes.poll()
    assert held(routes) == {b"films": (4, "v3")}


@pytest.mark.parametrize("source, target", [
    ("routes/films.json", "routes/music.json"),   # one service's route as another's
    ("routes/films.json", "route.json"),          # as the default service's
    ("route.json", "routes/music.json"),          # the default's as another service's
])
def test_it_refuses_a_route_file_renamed_into_another_services_place(tmp_path, source, target):
    Feeds(tmp_path, films=film(7, "v3")).publish()
    routes = ServiceRoutes(tmp_path, KEY)
    routes.load()
    default_before = routes.default.route
    shutil.copy(tmp_path / source, tmp_path / f"{target}.tmp")
    os.replace(tmp_path / f"{target}.tmp", tmp_path / target)
    routes.poll()
    assert b"music" not in routes.table
    assert routes.default.route == default_before
    refused = [*routes.default.refused, *(r for f in routes.followers.values() for r in f.refused)]
    assert any("renamed file" in reason for reason in refused)


@pytest.mark.parametrize("damage", ["remove", "garbage", "wrong key"])
def test_it_keeps_a_services_last_route_when_its_file_fails(tmp_path, damage):
    Feeds(tmp_path, films=film(2, "v2"), tv=film(1, service="tv")).publish()
    routes = ServiceRoutes(tmp_path, KEY)
    routes.load()
    feed = service_file(tmp_path, "films")
    if damage == "remove":
        feed.unlink()
    elif damage == "garbage":
        feed.write_bytes(b"{not json")
    else:
        feed.write_bytes(encode(film(9, "v3"), b"o" * 32))
    routes.poll()
    assert held(routes) == {b"films": (2, "v2"), b"tv": (1, "v1")}


def test_it_serves_every_service_from_its_copies_after_a_restart_without_the_feeds(tmp_path):
    Feeds(tmp_path, films=film(2, "v2")).publish()
    ServiceRoutes(tmp_path, KEY).load()
    shutil.rmtree(tmp_path / "routes")
    (tmp_path / "route.json").unlink()
    again = ServiceRoutes(tmp_path, KEY)
    again.load()
    assert held(again) == {b"films": (2, "v2")}
    assert again.default.route is not None


def test_it_follows_a_service_added_while_running(tmp_path):
    feeds = Feeds(tmp_path)
    feeds.publish()
    routes = ServiceRoutes(tmp_path, KEY)
    routes.load()
    assert routes.table == {}
    feeds.offered["films"] = film(0)
    feeds.publish()
    assert routes.poll() is True
    assert held(routes) == {b"films": (0, "v1")}


def test_it_removes_a_service_by_a_signed_removal_that_survives_a_restart(tmp_path):
    feeds = Feeds(tmp_path, films=film(4, "v2"), tv=film(1, service="tv"))
    feeds.publish()
    routes = ServiceRoutes(tmp_path, KEY)
    routes.load()
    del feeds.offered["films"]
    feeds.now = 2000.0
    feeds.publish()
    assert decode_entry(service_file(tmp_path, "films").read_bytes(), KEY) == \
        Removal("films", 4, 2000.0)
    routes.poll()
    assert held(routes) == {b"tv": (1, "v1")}
    restarted = ServiceRoutes(tmp_path, KEY)
    restarted.load()  # its copy of films is the removal too, not the old route
    assert held(restarted) == {b"tv": (1, "v1")}
    feeds.offered["films"] = film(0, issued=2500.0)  # added again, counting anew
    feeds.publish()
    restarted.poll()
    assert held(restarted) == {b"films": (0, "v1"), b"tv": (1, "v1")}


def test_it_removes_the_services_a_previous_monitor_left_behind(tmp_path):
    Feeds(tmp_path, films=film(4, "v2"), tv=film(1, service="tv")).publish()
    successor = Feeds(tmp_path, tv=film(1, service="tv"))
    successor.publish()
    assert isinstance(decode_entry(service_file(tmp_path, "films").read_bytes(), KEY), Removal)
    mark = service_file(tmp_path, "films").stat().st_mtime_ns
    successor.publish()  # a removal is written once
    assert service_file(tmp_path, "films").stat().st_mtime_ns == mark


# -- evidence and counts per service -------------------------------------------------------

def test_it_keeps_another_services_evidence_from_an_older_monitor():
    raw = evidence.pack("v1", "timeout", 100.0, KEY, "films")
    assert evidence.unpack(raw, KEY, 100.0) is None  # what a one-service monitor reads
    assert evidence.unpack_evidence(raw, KEY, 100.0) == ("films", ("v1", "timeout"), None)
    counts = evidence.pack_counts([("v1", "ok", 2)], 100.0, KEY, "films")
    assert evidence.unpack_counts(counts, KEY, 100.0) is None
    assert evidence.unpack_evidence(counts, KEY, 100.0) == ("films", None, [("v1", "ok", 2)])
    assert evidence.unpack_evidence(raw, b"o" * 32, 100.0) is None


async def test_it_carries_each_services_evidence_to_the_monitor_under_its_name(tmp_path):
    got: list[tuple[str, ...]] = []
    receiver = evidence.Receiver(
        tmp_path, KEY, lambda: 100.0, lambda v, f: got.append(("", v, f)),
        lambda c: got.append(("counts", str(c))),
        on_service_report=lambda s, v, f: got.append((s, v, f)),
        on_service_counts=lambda s, c: got.append((s, str(c))))
    receiver.start()
    sender = evidence.Sender(tmp_path, KEY, lambda: 100.0)
    try:
        sender.report("v1", "refused")
        sender.report("v1", "timeout", "films")
        sender.report_counts([("v2", "ok", 3)], "films")
        for _ in range(200):
            if len(got) == 3:
                break
            await asyncio.sleep(0.01)
    finally:
        receiver.stop()
        sender.close()
    assert got == [("", "v1", "refused"), ("films", "v1", "timeout"),
                   ("films", "[('v2', 'ok', 3)]")]


def test_it_sends_each_services_counts_under_its_name():
    outcomes = Outcomes()
    outcomes.gateway_request("v1", "ok")
    outcomes.for_service("films").gateway_request("v1", "failed")
    outcomes.for_service("films").gateway_request("v1", "failed")
    sent: list[tuple[str, list[tuple[str, str, int]]]] = []
    outcomes.flush(lambda counts, service: sent.append((service, counts)))
    assert sent == [("", [("v1", "ok", 1)]), ("films", [("v1", "failed", 2)])]
    outcomes.flush(lambda counts, service: sent.append((service, counts)))
    assert len(sent) == 2  # nothing new: nothing sent


# -- the runtime adapter ------------------------------------------------------------------

class OneService:
    def __init__(self):
        self.reports: list[tuple[str, str]] = []

    def report_gateway_failure(self, version, failure):
        self.reports.append((version, failure))


class SeveralServices:
    def __init__(self):
        self.reports: list[tuple[str, str, str]] = []

    def service_routes(self):
        urls = {"v1": "http://127.0.0.1:9001", "v2": "http://127.0.0.1:9002"}
        return {"books": (0, [("v1", urls["v1"])], urls),
                "films": (3, [("v2", urls["v2"]), ("v1", urls["v1"])], urls),
                "Bad Name": (0, [], urls), "empty": (0, [], {})}

    def report_gateway_failure(self, version, failure, service="books"):
        self.reports.append((service, version, failure))


def test_it_publishes_the_other_services_a_runtime_offers():
    assert other_services(OneService(), lambda: 5.0) is None
    routes = other_services(SeveralServices(), lambda: 5.0)
    assert routes is not None
    offered = routes()
    assert list(offered) == ["films"]
    assert (offered["films"].epoch, offered["films"].active, offered["films"].fallbacks,
            offered["films"].issued) == (3, "v2", ("v1",), 5.0)


def test_it_hands_another_services_evidence_only_to_a_runtime_that_takes_a_service():
    several, one = SeveralServices(), OneService()
    service_evidence(several)("films", "v2", "timeout")
    service_evidence(one)("films", "v2", "timeout")
    assert several.reports == [("films", "v2", "timeout")]
    assert one.reports == []
