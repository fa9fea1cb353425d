"""Rollout weights in the route: the canary's share of first choices, retries to the other."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from monitor.gateway.feed import route_from
from monitor.gateway.route import Route, RouteError, decode, encode

KEY = b"k" * 32
URLS = {"v1": "http://a", "v2": "http://b", "v3": "http://c"}


def weighted(weight: int) -> Route:
    return Route(epoch=1, active="v1", fallbacks=("v2", "v3"), urls=URLS, issued=1.0,
                 weights={"v2": weight} if weight else {})


@pytest.mark.parametrize("weight", [0, 10, 30, 50, 90, 100])
def test_it_sends_the_weighted_version_its_share_of_requests(weight):
    route = weighted(weight)
    firsts = [route.candidates(turn)[0][0] for turn in range(1, 1001)]
    assert abs(firsts.count("v2") - weight * 10) <= 2  # evenly spread, not by chance
    assert firsts.count("v1") == 1000 - firsts.count("v2")


def test_it_spreads_the_canary_evenly_rather_than_in_runs():
    firsts = [weighted(10).candidates(turn)[0][0] for turn in range(1, 101)]
    for start in range(0, 100, 20):  # every 20 requests hold about 2 for the canary
        assert 1 <= firsts[start:start + 20].count("v2") <= 3


@pytest.mark.parametrize("turn", range(1, 30))
def test_it_retries_on_the_other_version_whichever_came_first(turn):
    order = [v for v, _ in weighted(50).candidates(turn)]
    assert sorted(order) == ["v1", "v2", "v3"]  # each version once
    assert order[:2] in (["v1", "v2"], ["v2", "v1"])


def test_it_signs_and_reads_back_the_weights_and_leaves_them_out_when_none():
    assert decode(encode(weighted(30), KEY), KEY) == weighted(30)
    assert "weights" not in encode(weighted(0), KEY).decode()
    assert not weighted(30).same_path(weighted(50))


@pytest.mark.parametrize("weights", [{"v9": 10}, {"v2": 101}, {"v2": -1}, {"v2": "10"},
                                     {"v2": True}, {"v2": 60, "v3": 50}, [10]])
def test_it_refuses_weights_that_are_not_percents_of_its_versions(weights):
    body = {"epoch": 1, "active": "v1", "fallbacks": [], "urls": URLS, "issued": 1.0,
            "weights": weights}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    doc = {**body, "mac": hmac.new(KEY, canonical, hashlib.sha256).hexdigest()}
    raw = json.dumps(doc).encode()
    with pytest.raises(RouteError, match="weights"):
        decode(raw, KEY)


def test_it_publishes_only_positive_weights_of_versions_other_than_the_active():
    route = route_from(2, [("v1", "http://a")], URLS, 5.0,
                       weights={"v2": 10, "v3": 0, "v1": 40, "v9": 5})
    assert route.weights == {"v2": 10}
