"""What the gateway process sends the monitor once a second: outcomes and recent p99s."""

from __future__ import annotations

from monitor.gateway.evidence import P99_US
from monitor.gateway.process import Outcomes
from monitor.gateway.timing import AttemptTimeouts


def test_it_sends_each_answering_versions_recent_p99_with_the_counts():
    timeouts = AttemptTimeouts()
    for i in range(100):
        timeouts.observe("v2", 0.001 * (i + 1), now=1.0)  # 1..100 ms
        timeouts.observe("v1", 0.002, now=1.0)
    outcomes = Outcomes()
    outcomes.quantiles = lambda version: timeouts.quantiles(version, 1.0)
    for _ in range(3):
        outcomes.gateway_request("v2", "ok")
    outcomes.gateway_request("v1", "retried")
    assert sorted(outcomes.take()) == [("v1", P99_US, 2000), ("v1", "retried", 1),
                                       ("v2", "ok", 3), ("v2", P99_US, 99000)]
    assert outcomes.take() == []  # nothing answered since: nothing to send


def test_it_leaves_the_p99_out_while_too_few_answers_are_known():
    outcomes = Outcomes()
    outcomes.quantiles = lambda version: AttemptTimeouts().quantiles(version, 1.0)
    outcomes.gateway_request("v3", "ok")
    assert outcomes.take() == [("v3", "ok", 1)]
