"""The route feed: signed routes ordered by epoch, the publisher's file, the follower's rules."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from monitor.gateway import evidence
from monitor.gateway.feed import RoutePublisher, route_from
from monitor.gateway.follow import RouteFollower
from monitor.gateway.route import Route, RouteError, decode, encode, newer

KEY = b"k" * 32
URLS = {"v1": "http://127.0.0.1:8001", "v2": "http://127.0.0.1:8002",
        "v3": "http://127.0.0.1:8003"}


def route(epoch: int, active: str = "v1", fallbacks=("v2", "v3"), issued: float = 100.0):
    return Route(epoch=epoch, active=active, fallbacks=tuple(fallbacks), urls=URLS,
                 issued=issued)


@pytest.mark.parametrize("candidate, held, applied", [
    (route(0), None, True),
    (route(1, "v2"), route(0), True),                   # a switch
    (route(0, issued=101), route(0), True),             # same epoch, fallbacks changed later
    (route(0, issued=99), route(0), False),             # same epoch, issued earlier
    (route(0, issued=500), route(1, "v2"), False),      # an older epoch, whatever its time
    (route(1, "v2", issued=1), route(0, issued=900), True),
])
def test_it_applies_only_a_newer_route(candidate, held, applied):
    assert newer(candidate, held) is applied


def test_it_reads_back_what_it_signed_and_lists_the_active_version_first():
    decoded = decode(encode(route(3, "v2", ("v1", "v3")), KEY), KEY)
    assert decoded == route(3, "v2", ("v1", "v3"))
    assert decoded.candidates() == [("v2", URLS["v2"]), ("v1", URLS["v1"]),
                                    ("v3", URLS["v3"])]


@pytest.mark.parametrize("tamper", [
    lambda doc: doc.update(active="v3"),
    lambda doc: doc.update(epoch=99),
    lambda doc: doc["urls"].update(v1="http://evil.example"),
])
def test_it_refuses_an_altered_route(tamper):
    doc = json.loads(encode(route(1), KEY))
    tamper(doc)
    with pytest.raises(RouteError, match="mac"):
        decode(json.dumps(doc).encode(), KEY)


@pytest.mark.parametrize("raw, reason", [
    (b"not json", "not JSON"),
    (b"[]", "without a mac"),
    (b"{}", "without a mac"),
    (b"x" * 70_000, "larger"),
])
def test_it_refuses_a_route_document_that_is_not_one(raw, reason):
    with pytest.raises(RouteError, match=reason):
        decode(raw, KEY)


def test_it_refuses_a_route_signed_with_another_key():
    with pytest.raises(RouteError, match="mac"):
        decode(encode(route(1), b"o" * 32), KEY)


def test_it_builds_the_route_from_the_candidates_active_first():
    built = route_from(4, [("v2", URLS["v2"]), ("v3", URLS["v3"])], URLS, now=7.0)
    assert (built.epoch, built.active, built.fallbacks, built.issued) == (4, "v2", ("v3",), 7.0)


# -- publisher and follower over real files ------------------------------------------------------

async def test_it_publishes_on_change_and_again_when_the_file_is_removed(tmp_path):
    current = [route(0)]
    publisher = RoutePublisher(tmp_path, KEY, lambda: current[0])
    await publisher.publish()
    first = (tmp_path / "route.json").stat().st_mtime_ns
    await publisher.publish()  # nothing changed: not written again
    assert (tmp_path / "route.json").stat().st_mtime_ns == first
    current[0] = route(1, "v2", issued=200)
    await publisher.publish()
    assert decode((tmp_path / "route.json").read_bytes(), KEY).epoch == 1
    (tmp_path / "route.json").unlink()
    await publisher.publish()
    assert decode((tmp_path / "route.json").read_bytes(), KEY).active == "v2"
    assert (tmp_path / "route.json").stat().st_mode & 0o077 == 0


async def test_it_keeps_trying_while_the_route_file_cannot_be_written(tmp_path):
    publisher = RoutePublisher(tmp_path, KEY, lambda: route(2, "v3"))
    (tmp_path / "route.json").mkdir()
    await publisher.publish()
    assert publisher.failures == 1 and publisher.published is None
    os.rmdir(tmp_path / "route.json")
    await publisher.publish()
    assert publisher.failures == 0 and decode((tmp_path / "route.json").read_bytes(),
                                              KEY).epoch == 2


def publish(path, value: Route, key: bytes = KEY) -> None:
    tmp = path / "route.json.tmp"
    tmp.write_bytes(encode(value, key))
    os.replace(tmp, path / "route.json")


def test_it_follows_a_newer_route_and_persists_it(tmp_path):
    follower = RouteFollower(tmp_path, KEY)
    follower.load()
    assert follower.route_candidates() == []  # nothing known: the gateway answers 503
    publish(tmp_path, route(0))
    assert follower.poll() is True
    publish(tmp_path, route(1, "v2", ("v3",), issued=200))
    assert follower.poll() is True
    assert [v for v, _ in follower.route_candidates()] == ["v2", "v3"]
    assert decode((tmp_path / "gateway-route.json").read_bytes(), KEY).epoch == 1


def test_it_never_applies_an_older_epoch(tmp_path):
    follower = RouteFollower(tmp_path, KEY)
    publish(tmp_path, route(5, "v3", issued=100))
    follower.poll()
    publish(tmp_path, route(4, "v1", issued=999))
    assert follower.poll() is False
    assert follower.route is not None and (follower.route.epoch, follower.route.active) == \
        (5, "v3")
    assert "older than the held epoch 5" in follower.refused[-1]


@pytest.mark.parametrize("damage", ["missing", "garbage", "other key"])
def test_it_keeps_the_last_route_when_the_feed_fails(tmp_path, damage):
    follower = RouteFollower(tmp_path, KEY)
    publish(tmp_path, route(2, "v2"))
    follower.poll()
    if damage == "missing":
        (tmp_path / "route.json").unlink()
    elif damage == "garbage":
        (tmp_path / "route.json").write_bytes(b"{half")
    else:
        publish(tmp_path, route(9, "v3"), key=b"x" * 32)
    assert follower.poll() is False
    assert follower.route is not None and follower.route.active == "v2"


def test_it_serves_its_persisted_route_after_a_restart_without_the_feed(tmp_path):
    first = RouteFollower(tmp_path, KEY)
    publish(tmp_path, route(3, "v2"))
    first.poll()
    (tmp_path / "route.json").unlink()  # the monitor is gone, and so is its file
    second = RouteFollower(tmp_path, KEY)
    second.load()
    assert second.route is not None and (second.route.epoch, second.route.active) == (3, "v2")


def test_it_prefers_the_newer_of_its_copy_and_the_feed_at_start(tmp_path):
    first = RouteFollower(tmp_path, KEY)
    publish(tmp_path, route(3, "v2"))
    first.poll()
    publish(tmp_path, route(1, "v1"))  # an older file cannot roll the gateway back
    second = RouteFollower(tmp_path, KEY)
    second.load()
    assert second.route is not None and second.route.epoch == 3


# -- passive evidence ----------------------------------------------------------------------------

@pytest.mark.parametrize("raw_of, now, believed", [
    (lambda: evidence.pack("v1", "timeout", 100.0, KEY), 101.0, ("v1", "timeout")),
    (lambda: evidence.pack("v1", "timeout", 100.0, KEY), 200.0, None),     # stale
    (lambda: evidence.pack("v1", "timeout", 100.0, b"o" * 32), 100.0, None),  # wrong key
    (lambda: evidence.pack("v1", "timeout", 100.0, KEY).replace(b"v1", b"v2"), 100.0, None),
    (lambda: b"garbage", 100.0, None),
])
def test_it_believes_only_fresh_signed_evidence(raw_of, now, believed):
    assert evidence.unpack(raw_of(), KEY, now) == believed


@pytest.mark.parametrize("counts, believed", [
    ([("v1", "ok", 3), ("v2", "retried", 1)], True),
    ([("v1", "ok", 0)], False),
    ([("v1", "ok", -5)], False),
])
def test_it_believes_only_positive_signed_counts(counts, believed):
    raw = evidence.pack_counts(counts, 100.0, KEY)
    assert (evidence.unpack_counts(raw, KEY, 100.0) == counts) is believed
    assert evidence.unpack_counts(raw, b"o" * 32, 100.0) is None
    assert evidence.unpack(raw, KEY, 100.0) is None  # counts are not a failure report


async def test_it_carries_evidence_from_the_gateway_to_the_monitor(tmp_path):
    got: list[tuple[str, str]] = []
    counted: list[list[tuple[str, str, int]]] = []
    receiver = evidence.Receiver(tmp_path, KEY, lambda: 100.0,
                                 lambda v, f: got.append((v, f)), counted.append)
    receiver.start()
    sender = evidence.Sender(tmp_path, KEY, lambda: 100.0)
    try:
        sender.report("v1", "refused")
        sender.report("v2", "timeout")
        sender.report_counts([("v1", "ok", 7)])
        for _ in range(100):
            if len(got) == 2 and counted:
                break
            await asyncio.sleep(0.01)
    finally:
        receiver.stop()
    assert got == [("v1", "refused"), ("v2", "timeout")]
    assert counted == [[("v1", "ok", 7)]]
    sender.report("v1", "refused")  # the monitor is gone: dropped, never raised
    sender.close()


def test_it_spreads_requests_over_replicas_round_robin_then_falls_back():
    route = Route(epoch=3, active="v1", fallbacks=("v2",),
                  urls={"v1": "http://a1", "v2": "http://b"}, issued=1.0,
                  replicas={"v1": ("http://a1", "http://a2", "http://a3")})
    firsts = [route.candidates(turn)[0][1] for turn in range(6)]
    assert firsts == ["http://a1", "http://a2", "http://a3"] * 2
    assert route.candidates(1) == [("v1", "http://a2"), ("v1", "http://a3"),
                                   ("v1", "http://a1"), ("v2", "http://b")]


def test_it_signs_and_reads_back_the_replicas():
    key = b"k" * 32
    route = Route(epoch=1, active="v1", fallbacks=(), urls={"v1": "http://a1"}, issued=2.0,
                  replicas={"v1": ("http://a1", "http://a2")})
    assert decode(encode(route, key), key) == route
    plain = Route(epoch=1, active="v1", fallbacks=(), urls={"v1": "http://a1"}, issued=2.0)
    assert "replicas" not in encode(plain, key).decode()  # older gateways read it unchanged
