"""Time from fault injection to failover, per fault kind, against the theoretical bound.

Starts real v1/v2/v3 service processes once and, for every trial, a fresh monitor (new data
directory, so no ejection or flapping history carries over) watching them. Each trial injects
one fault on v1 and reads the switch time from the audit log's `failover.automatic` row.

`local-crash` is the crash of a replica the monitor runs itself (a spec, MONITOR_SPEC): the
process exit is certain evidence, so the version is DOWN without waiting for failed probes;
`crash` is the same fault on an external service, found by probes only.

    python bench/failover_time.py [--trials 10] [--faults crash,local-crash,hang,errors,corrupt]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import (  # noqa: E402
    FAST,
    all_versions_up,
    free_ports,
    inject_fault,
    start_monitor,
    start_service,
)

TOKEN = "bench-chaos-token-0123456789abcdef-xyz"
LOCAL = "local-crash"
LOCAL_SPEC = """apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  versions:
    - {name: v1, command: [python, -m, services.v1]}
    - {name: v2, command: [python, -m, services.v2]}
    - {name: v3, command: [python, -m, services.v3]}
  readinessProbe: {periodSeconds: 0.5, failureThreshold: 3, timeoutSeconds: 0.4}
  livenessProbe: {periodSeconds: 0.5, failureThreshold: 3, timeoutSeconds: 0.4}
"""
FAULTS = {
    "crash": ("crash", {}),
    LOCAL: ("crash", {}),
    "hang": ("hang", {}),
    "errors": ("errors", {"probability": 1.0}),
    "corrupt": ("corrupt", {"silent": True}),
}


def bound() -> float:
    """interval + (fall-1)*fast_interval + timeout + 1 s (the issue's bound)."""
    return (float(FAST["MONITOR_INTERVAL"]) + 2 * float(FAST["MONITOR_FAST_INTERVAL"])
            + float(FAST["MONITOR_TIMEOUT"]) + 1.0)


def switched_at(db: Path, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT ts FROM audit WHERE action='failover.automatic' "
                               "ORDER BY seq LIMIT 1").fetchone()
        if row:
            return datetime.fromisoformat(row[0].replace("Z", "+00:00")).timestamp()
        time.sleep(0.02)
    return None


class Services:
    def __init__(self) -> None:
        self.ports = dict(zip(("v1", "v2", "v3"), free_ports(3), strict=True))
        self.procs = {v: start_service(v, p, TOKEN) for v, p in self.ports.items()}

    def urls(self) -> dict[str, str]:
        return {v: f"http://127.0.0.1:{p}" for v, p in self.ports.items()}

    def heal(self) -> None:
        for version, proc in self.procs.items():
            if proc.poll() is not None:
                self.procs[version] = start_service(version, self.ports[version], TOKEN)
            else:
                httpx.post(f"{self.urls()[version]}/chaos/reset", timeout=5.0,
                           headers={"Authorization": f"Bearer {TOKEN}"})

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(timeout=10)


def local_trial() -> float | None:
    """A crash of v1's replica, run by the monitor from a spec."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-failover-local-"))
    (tmp / "spec.yaml").write_text(LOCAL_SPEC)
    monitor = start_monitor(tmp / "data", MONITOR_SPEC=str(tmp / "spec.yaml"),
                            MONITOR_CHAOS_TOKEN=TOKEN, ready_timeout=60)
    try:
        status = monitor.wait_for(lambda s: all_versions_up(s) and all(
            any(r["ready"] for r in v["replicas"] or []) for v in s["versions"]), timeout=60)
        time.sleep(float(FAST["MONITOR_STARTUP_GRACE"]))
        port = next(r["port"] for r in status["versions"][0]["replicas"] if r["ready"])
        at = inject_fault(f"http://127.0.0.1:{port}", TOKEN, "crash")
        done = switched_at(tmp / "data" / "monitor.db", timeout=bound() * 4)
        return None if done is None else done - at
    finally:
        monitor.stop(signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)


def trial(services: Services, fault: str) -> float | None:
    if fault == LOCAL:
        return local_trial()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    monitor = start_monitor(data_dir, services=services.urls(), MONITOR_CHAOS_TOKEN=TOKEN)
    try:
        monitor.wait_for(all_versions_up, timeout=20)
        time.sleep(float(FAST["MONITOR_STARTUP_GRACE"]))
        name, body = FAULTS[fault]
        at = inject_fault(services.urls()["v1"], TOKEN, name, body)
        done = switched_at(data_dir / "monitor.db", timeout=bound() * 4)
        return None if done is None else done - at
    finally:
        monitor.stop(signal.SIGTERM)
        services.heal()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    services = Services()
    results: dict[str, list[float | None]] = {}
    try:
        for fault in args.faults.split(","):
            results[fault] = []
            for number in range(args.trials):
                took = trial(services, fault)
                results[fault].append(took)
                shown = "no switch" if took is None else f"{took:.2f}s"
                print(f"  {fault:8} trial {number + 1:2}/{args.trials}: {shown}", flush=True)
    finally:
        services.close()
    settings = ", ".join(f"{k.removeprefix('MONITOR_').lower()}={v}" for k, v in FAST.items())
    print(f"\nsettings: {settings}, fall=3")
    print(f"theoretical bound: interval + (fall-1)*fast_interval + timeout + 1 s = {bound():.2f}s")
    print(f"{'fault':10}{'n':>4}{'missed':>8}{'min':>8}{'median':>8}{'max':>8}"
          f"{'bound':>8}{'max/bound':>11}")
    for fault, times in results.items():
        got = [t for t in times if t is not None]
        if not got:
            print(f"{fault:10}{len(times):4}{len(times):8}")
            continue
        print(f"{fault:10}{len(times):4}{len(times) - len(got):8}{min(got):8.2f}"
              f"{statistics.median(got):8.2f}{max(got):8.2f}{bound():8.2f}"
              f"{max(got) / bound():11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
