"""Replicas through the whole monitor (`python -m monitor run` with a spec), for real:
CPU autoscaling driven by the `cpu` chaos fault, a revision that changes the versions and a
command's env while clients are served, and replicas that outlive a monitor crash and are
adopted by the next monitor on the data dir."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psutil

from tests.e2e.load import Load
from tests.e2e.monitor_proc import MonitorProcess, start_monitor
from tests.e2e.test_run import csrf_token

HEAD = """apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  replicas: 1
  readinessProbe: {periodSeconds: 1, failureThreshold: 2, timeoutSeconds: 1}
  livenessProbe: {periodSeconds: 1, failureThreshold: 3, timeoutSeconds: 1}
"""
AUTOSCALED = HEAD + """  versions:
    - {name: v1, command: [python, -m, services.v1]}
    - {name: v2, command: [python, -m, services.v2]}
  autoscale: {targetCPU: 15, min: 1, max: 3, scaleDownStabilizationSeconds: 4}
"""
TWO = HEAD + """  versions:
    - {name: v1, command: [python, -m, services.v1]}
    - {name: v2, command: [python, -m, services.v2]}
"""
CHANGED = HEAD + """  versions:
    - {name: v1, command: [python, -m, services.v1], replicas: 2, env: {BOOKS_NOTE: rolled}}
    - {name: v2, command: [python, -m, services.v2]}
    - {name: v3, command: [python, -m, services.v3]}
"""
WINDOW_S = 4.0


def replicas(status: dict, version: str) -> list[dict]:
    item = next((v for v in status["versions"] if v["name"] == version), None)
    return (item or {}).get("replicas") or []


def ready(status: dict, version: str) -> int:
    return sum(1 for r in replicas(status, version) if r["ready"])


def all_up(status: dict) -> bool:
    return all(v["state"] == "up" for v in status["versions"])


def audit(monitor: MonitorProcess, action: str) -> list[dict]:
    with monitor.client() as client:
        rows = client.get("/api/audit", params={"limit": 500, "action": action}).json()["rows"]
    return [r for r in rows if r["action"] == action]


def post(monitor: MonitorProcess, path: str, form: dict[str, str]) -> int:
    with monitor.client() as client:
        page = client.get("/")
        answer = client.post(path, data={"csrf_token": csrf_token(page.text), **form},
                             headers={"Sec-Fetch-Site": "same-origin", "Origin": monitor.url},
                             follow_redirects=False)
    return answer.status_code


def apply_under_load(monitor: MonitorProcess, path: Path, text: str,
                     until: Callable[[dict], bool]) -> tuple[dict, Load]:
    """`apply -f` a spec while clients read through the gateway; the status once `until`
    holds, and the load (its errors) after more answers came."""
    path.write_text(text)
    with Load(monitor.gateway, workers=2, time_limit=120) as load:
        load.wait_for_answers(50, after=0, timeout=30)
        applied = monitor.cli("apply", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
        status = monitor.wait_for(until, timeout=90)
        load.wait_for_answers(50, after=time.monotonic(), timeout=30)
    return status, load


def launch(tmp_path, text: str, data: str = "data") -> MonitorProcess:
    spec = tmp_path / "books.yaml"
    spec.write_text(text)
    return start_monitor(tmp_path / data, MONITOR_SPEC=str(spec), MONITOR_RESTART_DELAY="1",
                         ready_timeout=90)


def test_it_scales_up_on_injected_cpu_and_back_down_after_the_window(tmp_path):
    monitor = launch(tmp_path, AUTOSCALED)
    try:
        monitor.wait_for(lambda s: ready(s, "v1") == 1 and all_up(s), timeout=60)
        assert post(monitor, "/actions/chaos/v1/cpu", {"seconds": "8", "workers": "1"}) == 303
        status = monitor.wait_for(lambda s: len(replicas(s, "v1")) >= 2, timeout=30)
        assert len(replicas(status, "v1")) <= 3  # max
        (up, *_) = [r for r in reversed(audit(monitor, "replicas.scale"))
                    if r["target"] == "v1"]
        params = json.loads(up["params"]) if isinstance(up["params"], str) else up["params"]
        assert params["from"] == 1 and params["to"] >= 2 and params["target_cpu"] == 15
        monitor.wait_for(lambda s: ready(s, "v1") >= 2, timeout=60)
        # the burn ends after 8 s; the window keeps the replicas WINDOW_S more, then v1 shrinks
        monitor.wait_for(lambda s: len(replicas(s, "v1")) == 1, timeout=90)
        scales = [r for r in audit(monitor, "replicas.scale") if r["target"] == "v1"]
        down = scales[0]  # newest first
        down_params = json.loads(down["params"]) if isinstance(down["params"], str) \
            else down["params"]
        assert down_params["to"] == 1
        assert down["seq"] > up["seq"]
        assert seconds_between(up["ts"], down["ts"]) >= WINDOW_S  # never before the window
    finally:
        monitor.stop()


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later.replace("Z", "+00:00"))
            - datetime.fromisoformat(earlier.replace("Z", "+00:00"))).total_seconds()


def test_it_reconciles_a_revision_that_adds_a_version_and_rolls_changed_replicas(tmp_path):
    monitor = launch(tmp_path, TWO)
    try:
        before = monitor.wait_for(lambda s: ready(s, "v1") == 1 and all_up(s), timeout=60)
        old_pids = {r["pid"] for r in replicas(before, "v1")}
        after, load = apply_under_load(
            monitor, tmp_path / "changed.yaml", CHANGED,
            lambda s: [v["name"] for v in s["versions"]] == ["v1", "v2", "v3"]
            and ready(s, "v1") == 2 and len(replicas(s, "v1")) == 2
            and not old_pids & {r["pid"] for r in replicas(s, "v1")}
            and ready(s, "v3") == 1 and all_up(s))
        assert load.errors == []
        assert after["active"] == "v1"
        assert [r["outcome"] for r in audit(monitor, "spec.reconcile")] == ["ok"]
        stops = audit(monitor, "replica.stop")
        assert stops and all("replaced" in r["reason"] for r in stops)
    finally:
        monitor.stop()


def test_it_adopts_replicas_after_a_crash_and_stops_them_on_a_clean_stop(tmp_path):
    first = launch(tmp_path, TWO)
    try:
        status = first.wait_for(lambda s: ready(s, "v1") == 1 and all_up(s), timeout=60)
        pids = {v: [r["pid"] for r in replicas(status, v)] for v in ("v1", "v2")}
        started = len(audit(first, "replica.start"))
    finally:
        first.stop(9, keep_children=True)  # SIGKILL: no clean stop of anything
    assert started == 2 and all(alive(p) for ps in pids.values() for p in ps)
    second = launch(tmp_path, TWO)
    try:
        status = second.wait_for(lambda s: ready(s, "v1") == 1 and all_up(s), timeout=60)
        assert {v: [r["pid"] for r in replicas(status, v)] for v in ("v1", "v2")} == pids
        (adopted,) = audit(second, "replicas.adopt")
        assert "left running" in adopted["reason"]
        assert len(audit(second, "replica.start")) == started  # none started afresh
    finally:
        second.stop()
    gone = time.monotonic() + 15
    while any(alive(p) for ps in pids.values() for p in ps) and time.monotonic() < gone:
        time.sleep(0.1)
    assert not any(alive(p) for ps in pids.values() for p in ps)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_it_hands_over_from_fixed_port_services_to_the_first_applied_spec(tmp_path):
    monitor = start_monitor(tmp_path / "data", MONITOR_RESTART_DELAY="1", ready_timeout=90)
    try:
        before = monitor.wait_for(all_up, timeout=60)
        assert all(v["replicas"] is None for v in before["versions"])
        fixed = {p.name for p in (tmp_path / "data" / "run").glob("v*.pid")}
        assert fixed == {"v1.pid", "v2.pid", "v3.pid"}
        after, load = apply_under_load(
            monitor, tmp_path / "three.yaml", CHANGED,
            lambda s: ready(s, "v1") == 2 and ready(s, "v2") == 1 and ready(s, "v3") == 1
            and all_up(s) and bool(audit(monitor, "spec.reconcile")))
        (handover,) = audit(monitor, "spec.reconcile")
        assert load.errors == []
        assert after["active"] == "v1", audit(monitor, "failover.automatic")
        assert "took over from the fixed-port services" in handover["reason"]
        assert not list((tmp_path / "data" / "run").glob("v*.pid"))  # fixed services stopped
    finally:
        monitor.stop()
