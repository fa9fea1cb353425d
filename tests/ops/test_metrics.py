"""Metrics: the rendered exposition names the families and labels operators alert on."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.ops.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    body, _ = metrics.render()
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_it_renders_prometheus_text_with_its_content_type():
    body, content_type = Metrics().render()
    assert content_type.startswith("text/plain; version=")
    assert b"# TYPE monitor_probes_total counter" in body


def test_it_counts_probes_by_outcome_and_observes_latency_in_seconds():
    m = Metrics()
    m.probe("v1", True, None, 250.0)
    m.probe("v1", True, None, 3.0)
    m.probe("v2", False, "timeout", None)
    m.probe("v2", False, "http_5xx", 12.0)

    got = samples(m)
    assert got[("monitor_probes_total", (("outcome", "ok"), ("version", "v1")))] == 2
    assert got[("monitor_probes_total", (("outcome", "timeout"), ("version", "v2")))] == 1
    assert got[("monitor_probes_total", (("outcome", "http_5xx"), ("version", "v2")))] == 1
    assert got[("monitor_probe_latency_seconds_count", (("version", "v1"),))] == 2
    assert got[("monitor_probe_latency_seconds_sum", (("version", "v1"),))] == pytest.approx(0.253)
    assert got[("monitor_probe_latency_seconds_count", (("version", "v2"),))] == 1
    assert got[("monitor_probe_latency_seconds_bucket", (("le", "0.005"), ("version", "v1")))] == 1


def test_it_marks_exactly_one_active_version():
    m = Metrics()
    m.set_active("v1", ["v1", "v2", "v3"])
    m.set_active("v2", ["v1", "v2", "v3"])

    got = samples(m)
    assert [got[("monitor_active_version", (("version", v),))] for v in ("v1", "v2", "v3")] == [
        0, 1, 0]


def test_it_counts_failovers_by_reason_starting_every_known_reason_at_zero():
    m = Metrics()
    m.failover("automatic")
    m.failover("automatic")
    m.failover("manual")

    got = samples(m)
    by_reason = {dict(labels)["reason"]: value for (name, labels), value in got.items()
                 if name == "monitor_failovers_total"}
    assert by_reason == {"automatic": 2, "manual": 1, "forced": 0, "failback": 0,
                         "auto_failback": 0}


def test_it_sets_incident_notice_and_version_gauges():
    m = Metrics()
    m.set_open_incidents(2)
    m.set_notices({"pending": 3, "sent": 7})
    m.set_notices({"pending": 1, "failed": 2})
    m.set_version_state("v1", "up")
    m.set_version_state("v2", "down")
    m.set_version_state("v3", "flapping")

    got = samples(m)
    assert got[("monitor_open_incidents", ())] == 2
    notices = {dict(labels)["status"]: value for (name, labels), value in got.items()
               if name == "monitor_notices"}
    assert notices == {"pending": 1, "failed": 2, "sent": 0, "unsent": 0, "sending": 0}
    up = {dict(labels)["version"]: value for (name, labels), value in got.items()
          if name == "monitor_version_up"}
    assert up == {"v1": 1, "v2": 0, "v3": 0}


def test_it_follows_every_change_of_a_version_gauge_and_the_active_version():
    m = Metrics()
    for state in ("up", "up", "down", "down", "up"):  # repeats cost nothing, changes show
        m.set_version_state("v1", state)
    for active in ("v1", "v2", "v2", "v1"):
        m.set_active(active, ["v1", "v2"])

    got = samples(m)
    assert got[("monitor_version_up", (("version", "v1"),))] == 1
    assert [got[("monitor_active_version", (("version", v),))] for v in ("v1", "v2")] == [1, 0]
    m.set_version_state("v1", "down")
    assert samples(m)[("monitor_version_up", (("version", "v1"),))] == 0


def test_it_counts_supervisor_restarts_and_gateway_requests():
    m = Metrics()
    m.supervisor_restart("v2")
    m.supervisor_restart("v2")
    m.gateway_request("v1", "ok")
    m.gateway_request("v2", "retried")

    got = samples(m)
    assert got[("monitor_supervisor_restarts_total", (("version", "v2"),))] == 2
    assert got[("monitor_gateway_requests_total", (("outcome", "ok"), ("version", "v1")))] == 1
    assert got[("monitor_gateway_requests_total", (("outcome", "retried"), ("version", "v2")))] == 1


def test_it_keeps_instances_apart():
    first, second = Metrics(), Metrics()
    first.failover("manual")

    assert samples(second)[("monitor_failovers_total", (("reason", "manual"),))] == 0
    assert samples(first)[("monitor_failovers_total", (("reason", "manual"),))] == 1
