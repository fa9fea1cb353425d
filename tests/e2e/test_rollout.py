"""Rollouts for real: three book services, the monitor and its gateway as processes, a bounded
GET load through the gateway, the rollout started and steered through the dashboard's forms.

- A good canary goes 10 -> 50 -> 100 and ends with v2 active: 0 failed requests.
- A bad canary (v2 answering 500 to 30 % of requests) is aborted at its first step, with the
  evidence in the audit log and one abort e-mail (a real SMTP server); the clients see no
  failure, because the gateway retries the canary's 500s on the stable version.
- BlueGreen switches in one step with 0 failed requests, and an abort inside
  scaleDownDelaySeconds switches straight back.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any

import pytest

from bench.processes import inject_fault
from tests.e2e.conftest import TOKEN
from tests.e2e.load import Load
from tests.e2e.monitor_proc import MonitorProcess, all_versions_up, start_monitor
from tests.e2e.test_run import csrf_token
from tests.notices.test_smtp import Inbox, smtp_server

pytestmark = pytest.mark.e2e

# Test timings through the spec: 2 s analysis intervals; thresholds loose enough that a good
# canary on a loaded two-core CI machine passes (a retried timeout is still a failure), tight
# enough that 30 % errors fail at once.
ROLLOUT = {
    "canary": "{strategy: Canary, steps: [{setWeight: 10}, {setWeight: 50}, {setWeight: 100}],"
              " analysis: {successRate: 0.95, intervalSeconds: 2, maxProbeFailures: 2,"
              " maxP99Ratio: 10}}",
    "bluegreen": "{strategy: BlueGreen, scaleDownDelaySeconds: 60,"
                 " analysis: {intervalSeconds: 2, maxProbeFailures: 2}}",
}


# Who answers is asserted with hedging off: on a loaded machine a hedged request is often
# answered by the next version, which says nothing about the route.
NO_HEDGE = {"MONITOR_GATEWAY_HEDGE": "0"}


def spec(services: dict[str, str], rollout: str) -> str:
    versions = ", ".join(f"{{name: {v}, url: '{u}'}}" for v, u in services.items())
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: books}\n"
            f"spec:\n  versions: [{versions}]\n  rollout: {rollout}\n")


@contextmanager
def monitored(tmp_path, services, strategy: str, **extra: str):
    path = tmp_path / "books.yaml"
    path.write_text(spec(services, ROLLOUT[strategy]))
    monitor = start_monitor(tmp_path / "data", services=services, MONITOR_SPEC=str(path),
                            MONITOR_CHAOS_TOKEN=TOKEN, **extra)
    try:
        monitor.wait_for(all_versions_up, timeout=30)
        yield monitor
    finally:
        monitor.stop()


def act(monitor: MonitorProcess, op: str, **form: str) -> dict[str, Any]:
    """A rollout form as the dashboard posts it (CSRF token, same origin), answered in JSON."""
    with monitor.client() as client:
        token = csrf_token(client.get("/").text)
        answer = client.post(f"/actions/rollout/{op}", data={"csrf_token": token, **form},
                             headers={"Sec-Fetch-Site": "same-origin", "Origin": monitor.url,
                                      "Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def audit(monitor: MonitorProcess, prefix: str = "rollout.") -> list[dict[str, Any]]:
    with monitor.client() as client:
        rows = client.get("/api/audit", params={"limit": 500}).json()["rows"]
    return sorted((r for r in rows if r["action"].startswith(prefix)), key=lambda r: r["seq"])


def params(row: dict[str, Any]) -> dict[str, Any]:
    value = row["params"]
    return json.loads(value) if isinstance(value, str) else dict(value)


def mostly(answers: list[tuple[float, int, str]], after: float, version: str) -> bool:
    """Most answers after `after` came from `version` (a request retried after a timeout on a
    loaded machine is answered by the next version)."""
    served = [by for at, _, by in answers if at > after]
    return bool(served) and served.count(version) >= 0.8 * len(served)


def rollout_state(state: str):
    return lambda s: s["rollout"] is not None and s["rollout"]["state"] == state


def test_it_walks_a_good_canary_to_v2_without_a_failed_request(tmp_path, services):
    with monitored(tmp_path, services, "canary", **NO_HEDGE) as monitor, \
            Load(monitor.gateway, workers=3, time_limit=120) as load:
        load.wait_for_answers(100, after=0, timeout=30)
        act(monitor, "start", target="v2", strategy="canary", reason="release 2")
        done = monitor.wait_for(rollout_state("completed"), timeout=60)
        monitor.wait_for(lambda s: s["active"] == "v2", timeout=10)
        moment = time.monotonic() + 1.0  # the gateway follows the route within 0.1 s
        load.wait_for_answers(100, after=moment, timeout=30)
        rows = audit(monitor)
    assert load.errors == []
    assert done["rollout"]["weight"] == 100
    weights = [params(r)["weight"] for r in rows if r["action"] == "rollout.step"]
    assert weights == [10, 50, 100]
    analyses = [r for r in rows if r["action"] == "rollout.analysis"]
    assert analyses and all(r["outcome"] == "ok" for r in analyses)
    served = {by for at, _, by in load.answers}
    assert {"v1", "v2"} <= served
    assert mostly(load.answers, moment, "v2")


def test_it_aborts_a_bad_canary_at_the_first_step_with_evidence_and_one_email(tmp_path,
                                                                              services):
    inbox = Inbox()
    with smtp_server(inbox) as port:
        mail = {"MONITOR_SMTP_HOST": "127.0.0.1", "MONITOR_SMTP_PORT": str(port),
                "MONITOR_SMTP_MODE": "plain", "MONITOR_SMTP_FROM": "monitor@example.test",
                "MONITOR_SMTP_TO": "oncall@example.test", "MONITOR_NOTIFY_GROUP_WINDOW": "1"}
        with monitored(tmp_path, services, "canary", **mail) as monitor, \
                Load(monitor.gateway, workers=3, time_limit=120) as load:
            load.wait_for_answers(100, after=0, timeout=30)
            inject_fault(services["v2"], TOKEN, "errors", {"probability": 0.3})
            act(monitor, "start", target="v2", reason="release 2")
            aborted = monitor.wait_for(rollout_state("aborted"), timeout=30)
            load.wait_for_answers(100, after=time.monotonic(), timeout=30)
            rows = audit(monitor)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    "aborted" in str(m["Subject"]) for m in inbox.messages):
                time.sleep(0.1)
            time.sleep(2)  # a duplicate would follow within the group window
    assert load.errors == []  # every canary 500 was retried on v1
    assert aborted["active"] == "v1" and aborted["rollout"]["weight"] == 0
    (abort,) = [r for r in rows if r["action"] == "rollout.abort"]
    assert params(abort)["step"] == 0
    failed = [r for r in rows if r["action"] == "rollout.analysis" and r["outcome"] == "failed"]
    assert len(failed) == 1 and params(failed[0])["weight"] == 10
    seen = params(failed[0])["measurement"]
    assert seen["canary_failures"] > 0 or seen["canary_probe_failures"] > 2
    assert [params(r)["weight"] for r in rows if r["action"] == "rollout.step"] == [10]
    abort_mails = [m for m in inbox.messages if "aborted" in str(m["Subject"])]
    assert len(abort_mails) == 1
    assert "v1 -> v2" in str(abort_mails[0]["Subject"])


def test_it_switches_bluegreen_in_one_step_and_back_when_aborted_inside_the_delay(tmp_path,
                                                                                  services):
    with monitored(tmp_path, services, "bluegreen", **NO_HEDGE) as monitor, \
            Load(monitor.gateway, workers=3, time_limit=120) as load:
        load.wait_for_answers(100, after=0, timeout=30)
        act(monitor, "start", target="v2", reason="release 2")
        switched = monitor.wait_for(lambda s: s["active"] == "v2", timeout=30)
        assert switched["rollout"]["state"] == "completed"
        load.wait_for_answers(100, after=time.monotonic(), timeout=30)
        answer = act(monitor, "abort", reason="bad reviews")
        assert answer["rollout"]["state"] == "aborted"
        back = monitor.wait_for(lambda s: s["active"] == "v1", timeout=5)
        moment = time.monotonic() + 1.0
        load.wait_for_answers(100, after=moment, timeout=30)
        switches = audit(monitor, "failover.manual")
    assert load.errors == []
    assert back["rollout"]["reason"] == "aborted by an operator: bad reviews"
    assert [(r["actor"], r["target"]) for r in switches] == [("rollout", "v2"), ("rollout", "v1")]
    assert mostly(load.answers, moment, "v1")


def test_it_starts_a_rollout_when_an_applied_spec_puts_another_version_first(tmp_path,
                                                                             services):
    with monitored(tmp_path, services, "canary") as monitor, \
            Load(monitor.gateway, workers=2, time_limit=120) as load:
        load.wait_for_answers(50, after=0, timeout=30)
        reordered = {v: services[v] for v in ("v2", "v1", "v3")}
        path = tmp_path / "v2-first.yaml"
        path.write_text(spec(reordered, ROLLOUT["canary"]))
        applied = monitor.cli("apply", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
        started = monitor.wait_for(lambda s: s["rollout"] is not None, timeout=15)
        assert (started["rollout"]["from"], started["rollout"]["to"]) == ("v1", "v2")
        monitor.wait_for(lambda s: s["active"] == "v2", timeout=60)
        rows = audit(monitor)
    assert load.errors == []
    start = next(r for r in rows if r["action"] == "rollout.start")
    assert start["actor"] == "monitor" and "puts v2 first" in params(start)["reason"]
