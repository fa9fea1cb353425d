"""The gateway as its own process: clients feel no monitor stop, kill -9 or feed outage.

Real processes on loopback: book services, the monitor (`python -m monitor run`) and its
gateway (`python -m monitor gateway`), under a bounded GET load that counts every failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.e2e.conftest import TOKEN
from tests.e2e.load import Load
from tests.e2e.monitor_proc import (
    ROOT,
    all_versions_up,
    free_ports,
    monitor_env,
    start_monitor,
    wait_until,
)
from tests.e2e.procs import stop_process


def held_route(data_dir) -> dict:
    return json.loads((data_dir / "gateway-route.json").read_text())


def mostly(served: list[str], version: str) -> bool:
    """Served by ``version``, apart from the few hedged to the next version (p95 and slower)."""
    return served.count(version) > 0.8 * len(served)


def pids(data_dir) -> dict[str, int]:
    return {p.stem: json.loads(p.read_text())["pid"] for p in (data_dir / "run").glob("*.pid")}


def test_it_loses_no_request_across_a_monitor_stop_and_start_with_its_own_gateway(
        tmp_path, services):
    """Production topology: MONITOR_SPAWN_GATEWAY=0 and the gateway under its own unit."""
    monitor = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN,
                            MONITOR_SPAWN_GATEWAY="0")
    env = monitor.env
    gateway = subprocess.Popen([sys.executable, "-m", "monitor", "gateway"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    restarted = None
    try:
        monitor.wait_for(all_versions_up, timeout=20)
        wait_until(lambda: _answers(monitor.gateway), timeout=15)
        with Load(monitor.gateway) as load:
            load.wait_for_answers(100, after=0, timeout=20)
            assert monitor.stop() == 0  # SIGTERM: a clean stop of the monitor alone
            stopped = time.monotonic()
            load.wait_for_answers(100, after=stopped, timeout=20)
            restarted = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN,
                                      MONITOR_SPAWN_GATEWAY="0", MONITOR_PORT=str(monitor.port),
                                      MONITOR_GATEWAY_PORT=str(monitor.gateway_port))
            load.wait_for_answers(100, after=time.monotonic(), timeout=20)
        assert load.errors == []
        assert mostly([by for _, _, by in load.answers], "v1")
        # the gateway's outcomes reach the monitor's metrics (once a second)
        with restarted.client() as client:
            served = wait_until(lambda: _served_ok(client.get("/metrics").text), timeout=10)
        assert served > 0
        assert held_route(tmp_path)["active"] == "v1" and held_route(tmp_path)["epoch"] == 0
        assert gateway.poll() is None
    finally:
        if restarted:
            restarted.stop()
        monitor.stop()
        stop_process(gateway)


def test_it_keeps_serving_through_a_monitor_kill_9_and_the_restart_adopts_the_children(
        tmp_path):
    monitor = start_monitor(tmp_path, MONITOR_RESTART_DELAY="30")
    env = monitor.env
    restarted = None
    try:
        monitor.wait_for(all_versions_up, timeout=30)
        token = (tmp_path / "chaos.token").read_text().strip()
        v1 = next(v["url"] for v in monitor.status()["versions"] if v["name"] == "v1")
        with Load(monitor.gateway) as load:
            load.wait_for_answers(50, after=0, timeout=20)
            httpx.post(f"{v1}/chaos/errors", json={"probability": 1.0}, timeout=2.0,
                       headers={"Authorization": f"Bearer {token}"})
            monitor.wait_for(lambda s: s["active"] == "v2", timeout=15)
            wait_until(lambda: held_route(tmp_path)["active"] == "v2", timeout=5)
            before = pids(tmp_path)
            assert set(before) == {"gateway", "v1", "v2", "v3"}
            assert monitor.stop(signal.SIGKILL, keep_children=True) == -signal.SIGKILL
            killed = time.monotonic()
            load.wait_for_answers(100, after=killed, timeout=20)
            assert all(psutil.pid_exists(pid) for pid in before.values())
            restarted = start_monitor(tmp_path, MONITOR_RESTART_DELAY="30",
                                      **{k: env[k] for k in ("MONITOR_PORT",
                                                             "MONITOR_GATEWAY_PORT",
                                                             "MONITOR_SERVICE_PORTS")})
            status = restarted.status()
            load.wait_for_answers(100, after=time.monotonic(), timeout=20)
        assert load.errors == []
        assert (status["active"], status["epoch"]) == ("v2", 1)
        assert pids(tmp_path) == before  # adopted, not started again
        assert {v["name"]: v["process"]["pid"] for v in status["versions"]} == \
            {v: before[v] for v in ("v1", "v2", "v3")}
        after_kill = [by for at, _, by in load.answers if at > killed]
        assert mostly(after_kill, "v2")  # the route survived the monitor
        assert held_route(tmp_path)["epoch"] == 1
    finally:
        if restarted:
            assert restarted.stop() == 0
            assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() !=
                           psutil.STATUS_ZOMBIE for pid in pids(tmp_path).values())
        monitor.stop()


def cut(feed: Path) -> None:
    """Put a directory where the route file is; the monitor may republish in between."""
    def replaced() -> bool:
        feed.unlink(missing_ok=True)
        try:
            feed.mkdir()
        except FileExistsError:
            return False
        return True
    wait_until(replaced, timeout=5)


def test_it_applies_a_failover_made_while_the_feed_was_cut_within_a_second_of_its_return(
        tmp_path, services):
    monitor = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN)
    feed = tmp_path / "route.json"
    try:
        monitor.wait_for(all_versions_up, timeout=20)
        wait_until(lambda: held_route(tmp_path)["fallbacks"] == ["v2", "v3"], timeout=10)
        with Load(monitor.gateway) as load:
            load.wait_for_answers(50, after=0, timeout=20)
            cut(feed)  # the monitor can no longer publish, the gateway no longer read
            httpx.post(f"{services['v1']}/chaos/errors", json={"probability": 1.0},
                       timeout=2.0, headers={"Authorization": f"Bearer {TOKEN}"})
            monitor.wait_for(lambda s: s["active"] == "v2", timeout=15)
            load.wait_for_answers(50, after=time.monotonic(), timeout=20)
            assert held_route(tmp_path)["epoch"] == 0  # fail static on the last route
            restored = time.monotonic()
            shutil.rmtree(feed)
            applied = wait_until(lambda: held_route(tmp_path)["epoch"] == 1 and time.monotonic(),
                                 timeout=10)
            load.wait_for_answers(50, after=applied, timeout=20)
        assert applied - restored <= 1.0
        assert held_route(tmp_path)["active"] == "v2"
        assert load.errors == []
        assert mostly([by for at, _, by in load.answers if at > applied + 0.1], "v2")
    finally:
        monitor.stop()


def test_it_refuses_to_start_a_gateway_without_the_monitors_key(tmp_path):
    port = free_ports(1)[0]
    env = monitor_env(tmp_path / "empty", 1, port)
    done = subprocess.run([sys.executable, "-m", "monitor", "gateway"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "secret.key does not exist" in done.stderr
    assert not os.path.exists(tmp_path / "empty" / "secret.key")


def _served_ok(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("monitor_gateway_requests_total{") and 'outcome="ok"' in line)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/books", params={"q": "whale"}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_it_serves_with_several_workers_and_stops_them_all_on_sigterm(tmp_path, services):
    monitor = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN,
                            MONITOR_SPAWN_GATEWAY="0")
    env = {**monitor.env, "MONITOR_GATEWAY_WORKERS": "2"}
    gateway = subprocess.Popen([sys.executable, "-m", "monitor", "gateway"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(monitor.gateway), timeout=15)
        workers = wait_until(lambda: len(psutil.Process(gateway.pid).children()) == 2
                             and psutil.Process(gateway.pid).children(), timeout=10)
        with httpx.Client(base_url=monitor.gateway, timeout=5) as client:
            answers = [client.get("/books", params={"q": "whale"}) for _ in range(20)]
        assert all(a.status_code == 200 for a in answers)
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=15) == 0
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        monitor.stop()
        stop_process(gateway)
