"""Replicas from a spec, for real: three processes of v1 behind the gateway, two killed under
load, no client request lost, three ready again after the restart delay."""

from __future__ import annotations

import time

from tests.e2e.load import Load
from tests.e2e.monitor_proc import start_monitor
from tests.e2e.test_run import csrf_token

SPEC = """apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  replicas: 1
  versions:
    - {name: v1, command: [python, -m, services.v1], replicas: 3}
    - {name: v2, command: [python, -m, services.v2]}
    - {name: v3, command: [python, -m, services.v3]}
  readinessProbe: {periodSeconds: 1, failureThreshold: 2, timeoutSeconds: 0.5}
  livenessProbe: {periodSeconds: 1, failureThreshold: 3, timeoutSeconds: 0.5}
"""


def ready(status: dict, version: str) -> int:
    item = next(v for v in status["versions"] if v["name"] == version)
    return sum(1 for r in item["replicas"] or [] if r["ready"])


def test_it_keeps_serving_while_two_of_three_replicas_are_killed(tmp_path):
    spec = tmp_path / "books.yaml"
    spec.write_text(SPEC)
    monitor = start_monitor(tmp_path / "data", MONITOR_SPEC=str(spec),
                            MONITOR_RESTART_DELAY="1", ready_timeout=90)
    try:
        status = monitor.wait_for(lambda s: ready(s, "v1") == 3 and all(
            v["state"] == "up" for v in s["versions"]), timeout=60)
        assert status["active"] == "v1"
        ports = {r["port"] for r in status["versions"][0]["replicas"]}
        assert len(ports) == 3
        with Load(monitor.gateway, workers=4, time_limit=90) as load:
            load.wait_for_answers(200, after=0, timeout=30)
            with monitor.client() as client:
                page = client.get("/")
                killed = client.post("/actions/chaos/v1/kill",
                                     data={"csrf_token": csrf_token(page.text), "count": "2"},
                                     headers={"Sec-Fetch-Site": "same-origin",
                                              "Origin": monitor.url},
                                     follow_redirects=False)
            assert killed.status_code == 303, killed.text
            moment = time.monotonic()
            monitor.wait_for(lambda s: ready(s, "v1") <= 1, timeout=10)
            load.wait_for_answers(300, after=moment, timeout=30)
            healed = monitor.wait_for(lambda s: ready(s, "v1") == 3, timeout=60)
            load.wait_for_answers(100, after=time.monotonic(), timeout=30)
        assert load.errors == []
        assert healed["active"] == "v1"  # one replica was left: no failover
        served_by = {by for _, _, by in load.answers}
        assert served_by == {"v1"} or "v1" in served_by
        with monitor.client() as client:
            rows = client.get("/api/audit", params={"limit": 500}).json()["rows"]
        actions = [r["action"] for r in rows]
        assert "chaos.kill" in actions
        assert actions.count("replica.restart") >= 2
        assert actions.count("replica.start") == 5  # 3 + 1 + 1, none started twice
    finally:
        monitor.stop()
