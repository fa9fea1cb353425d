"""End to end: real v1/v2/v3 processes, the real monitor, real faults."""

import json
import signal

import httpx

from bench.processes import FAST, all_versions_up, audit_table, inject_fault, start_monitor
from tests.e2e.conftest import TOKEN

# interval + (fall-1)*fast_interval + timeout + 1 s, with the FAST settings
BOUND = float(FAST["MONITOR_INTERVAL"]) + 2 * float(FAST["MONITOR_FAST_INTERVAL"]) \
    + float(FAST["MONITOR_TIMEOUT"]) + 1.0


def switch_times(data_dir) -> list[tuple[str, str]]:
    return audit_table(data_dir, "ts, target", action="failover.automatic")


def test_it_fails_over_on_crash_then_on_silent_corruption_and_survives_kill_9(
        tmp_path, services):
    monitor = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN)
    try:
        monitor.wait_for(lambda s: all_versions_up(s), timeout=20)
        inject_fault(services["v1"], TOKEN, "crash")
        monitor.wait_for(lambda s: s["active"] == "v2", timeout=BOUND)
        first = switch_times(tmp_path)[0]
        assert first[1] == "v2"

        # cooldown must pass before the next automatic failover
        inject_fault(services["v2"], TOKEN, "corrupt", {"silent": True})
        assert httpx.get(f"{services['v2']}/health", timeout=2).status_code == 200
        status = monitor.wait_for(lambda s: s["active"] == "v3", timeout=BOUND + 3)
        assert status["epoch"] == 2
        v2 = next(v for v in status["versions"] if v["name"] == "v2")
        assert v2["last_failure"] and "corrupt" in json.dumps(v2)

        before = audit_table(tmp_path)
        monitor.stop(signal.SIGKILL)
        restarted = start_monitor(tmp_path, services=services, MONITOR_CHAOS_TOKEN=TOKEN)
        try:
            status = restarted.status()
            assert (status["active"], status["epoch"]) == ("v3", 2)
            after = audit_table(tmp_path)
            assert after[:len(before)] == before
            assert restarted.cli("audit", "verify").returncode == 0
        finally:
            assert restarted.stop() == 0
    finally:
        monitor.stop(signal.SIGKILL)
