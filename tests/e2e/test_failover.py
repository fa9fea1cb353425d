"""End to end: real v1/v2/v3 processes, the real monitor, real faults."""

import json
import signal
import sqlite3

import httpx
import pytest

from tests.e2e.monitor_proc import FAST, all_versions_up, free_ports, start_monitor
from tests.e2e.procs import start_service

TOKEN = "e2e-chaos-token-0123456789abcdef-xyz"
# interval + (fall-1)*fast_interval + timeout + 1 s, with the FAST settings
BOUND = float(FAST["MONITOR_INTERVAL"]) + 2 * float(FAST["MONITOR_FAST_INTERVAL"]) \
    + float(FAST["MONITOR_TIMEOUT"]) + 1.0


@pytest.fixture
def services():
    ports = free_ports(3)
    procs = {v: start_service(v, p, TOKEN) for v, p in zip(("v1", "v2", "v3"), ports,
                                                          strict=True)}
    yield {v: f"http://127.0.0.1:{p}" for v, p in zip(procs, ports, strict=True)}
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def chaos(url: str, fault: str, body: dict | None = None) -> None:
    try:
        httpx.post(f"{url}/chaos/{fault}", json=body or {}, timeout=2.0,
                   headers={"Authorization": f"Bearer {TOKEN}"})
    except httpx.HTTPError:
        if fault != "crash":
            raise


def audit_actions(data_dir) -> list[tuple[int, str, str]]:
    with sqlite3.connect(data_dir / "monitor.db") as db:
        return db.execute("SELECT seq, action, target FROM audit ORDER BY seq").fetchall()


def switch_times(data_dir) -> list[tuple[str, str]]:
    with sqlite3.connect(data_dir / "monitor.db") as db:
        return db.execute("SELECT ts, target FROM audit WHERE action='failover.automatic' "
                          "ORDER BY seq").fetchall()


def test_it_fails_over_on_crash_then_on_silent_corruption_and_survives_kill_9(
        tmp_path, services):
    monitor = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN)
    try:
        monitor.wait_for(lambda s: all_versions_up(s), timeout=20)
        chaos(services["v1"], "crash")
        monitor.wait_for(lambda s: s["active"] == "v2", timeout=BOUND)
        first = switch_times(tmp_path)[0]
        assert first[1] == "v2"

        # cooldown must pass before the next automatic failover
        chaos(services["v2"], "corrupt", {"silent": True})
        assert httpx.get(f"{services['v2']}/health", timeout=2).status_code == 200
        status = monitor.wait_for(lambda s: s["active"] == "v3", timeout=BOUND + 3)
        assert status["epoch"] == 2
        v2 = next(v for v in status["versions"] if v["name"] == "v2")
        assert v2["last_failure"] and "corrupt" in json.dumps(v2)

        before = audit_actions(tmp_path)
        monitor.stop(signal.SIGKILL)
        restarted = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN)
        try:
            status = restarted.status()
            assert (status["active"], status["epoch"]) == ("v3", 2)
            after = audit_actions(tmp_path)
            assert after[:len(before)] == before
            assert restarted.cli("audit", "verify").returncode == 0
        finally:
            assert restarted.stop() == 0
    finally:
        monitor.stop(signal.SIGKILL)
