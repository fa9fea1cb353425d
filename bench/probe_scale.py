"""Probe throughput at scale: N probe targets watched by one monitor, at a 2 s interval.

For each N, starts N fast targets (bench/targets.py, one process), a fresh monitor in external
mode watching them, lets it settle, then measures for `--seconds`:
- probes done vs expected (N × seconds / interval), from /metrics;
- the schedule lag p99 (planned vs actual probe start, monitor_probe_schedule_lag_seconds);
- the monitor process's CPU (the gateway is a separate process and is not counted);
- the p95 of `GET /api/status`;
- the probes' median latency (bucket bound) and the CPU of the targets' process, to tell a
  slow monitor from slow targets.

    python bench/probe_scale.py [--sizes 100,300,1000,3000] [--seconds 60] [--concurrency N]

Target at 1,000 targets: ≥ 0.95 of expected probes, lag p99 < 100 ms, CPU < 1 core.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import free_ports, start_monitor, stop_process  # noqa: E402
from bench.targets import BOOK, CANARY  # noqa: E402
from monitor.failover.canary import book_digest  # noqa: E402

INTERVAL = 2.0
LATENCY = "monitor_probe_latency_seconds"
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _metric_sum(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(
        rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE))


def _buckets(text: str, name: str = "monitor_probe_schedule_lag_seconds") -> list[
        tuple[float, float]]:
    """A histogram's cumulative buckets, summed over its other labels (e.g. every version)."""
    sums: dict[float, float] = {}
    for labels, count in re.findall(rf'^{name}_bucket{{([^}}]*)}} ([0-9.e+-]+)$', text,
                                    re.MULTILINE):
        le = float(re.search(r'le="([^"]+)"', labels).group(1))  # type: ignore[union-attr]
        sums[le] = sums.get(le, 0.0) + float(count)
    return sorted(sums.items())


def _bound(before: list[tuple[float, float]], after: list[tuple[float, float]],
           share: float = 0.99) -> float:
    """Upper bound of the bucket holding the `share` quantile of the values seen in between."""
    old = dict(before)
    deltas = [(le, count - old.get(le, 0.0)) for le, count in after]
    total = deltas[-1][1] if deltas else 0.0
    for le, count in deltas:
        if total and count >= share * total:
            return le
    return float("inf")


def _all_up(client: httpx.Client) -> bool:
    try:
        return all(v["state"] == "up" for v in client.get("/api/status").json()["versions"])
    except httpx.TimeoutException:
        return False


def measure(size: int, seconds: float, concurrency: int | None) -> dict[str, float]:
    ports = free_ports(size)
    targets = subprocess.Popen([sys.executable, "-m", "bench.targets", *map(str, ports)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert targets.stdout is not None and targets.stdout.readline().strip() == "ready"
    data_dir = Path(tempfile.mkdtemp(prefix="probe-scale-"))
    services = {f"t{i}": f"http://127.0.0.1:{port}" for i, port in enumerate(ports)}
    settings = {
        "MONITOR_INTERVAL": str(INTERVAL), "MONITOR_FAST_INTERVAL": "1",
        "MONITOR_DOWN_INTERVAL": "5", "MONITOR_TIMEOUT": "1", "MONITOR_STARTUP_GRACE": "10",
        "MONITOR_COOLDOWN": "15", "MONITOR_CANARY_DIGEST": book_digest(BOOK), **CANARY}
    if concurrency:
        settings["MONITOR_PROBE_CONCURRENCY"] = str(concurrency)
    monitor = start_monitor(data_dir, services=services, ready_timeout=120.0, **settings)
    latencies: list[float] = []
    timeouts = [0]
    try:
        with monitor.client() as client:
            client.timeout = httpx.Timeout(60.0)  # an overloaded monitor still gets measured
            settle = time.monotonic() + 180.0  # every target UP: the start-up decisions done
            while time.monotonic() < settle and not _all_up(client):
                time.sleep(1.0)
            time.sleep(2 * INTERVAL)
            first = client.get("/metrics").text
            cpu0, t0 = _cpu_seconds(monitor.proc.pid), time.monotonic()
            targets0 = _cpu_seconds(targets.pid)
            stop = threading.Event()

            def poll_status() -> None:
                with monitor.client() as poller:
                    while not stop.wait(1.0):
                        started = time.perf_counter()
                        try:
                            poller.get("/api/status").raise_for_status()
                        except httpx.TimeoutException:
                            timeouts[0] += 1  # counted, and shown as the p95's bound
                            continue
                        latencies.append(time.perf_counter() - started)

            poller = threading.Thread(target=poll_status)
            poller.start()
            time.sleep(seconds)
            stop.set()
            poller.join()
            last = client.get("/metrics").text
            cpu1, t1 = _cpu_seconds(monitor.proc.pid), time.monotonic()
            targets1 = _cpu_seconds(targets.pid)
            versions = client.get("/api/status").json()["versions"]
            up = sum(v["state"] == "up" for v in versions)
    finally:
        monitor.stop()
        stop_process(targets)  # type: ignore[arg-type]
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(data_dir, ignore_errors=True)
    elapsed = t1 - t0
    done = _metric_sum(last, "monitor_probes_total") - _metric_sum(first, "monitor_probes_total")
    return {
        "done": done / (size * elapsed / INTERVAL),
        "up": up,
        "lag_p99_ms": _bound(_buckets(first), _buckets(last)) * 1000,
        "probe_p50_ms": _bound(_buckets(first, LATENCY), _buckets(last, LATENCY), 0.5) * 1000,
        "cpu": (cpu1 - cpu0) / elapsed,
        "targets_cpu": (targets1 - targets0) / elapsed,
        "status_p95_ms": statistics.quantiles(latencies, n=20)[-1] * 1000
        if len(latencies) >= 2 and timeouts[0] <= len(latencies) / 20 else float("inf"),
    }


def _ms(value: float) -> str:
    return "> 5 s (timeouts)" if value == float("inf") else f"{value:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000,3000")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="MONITOR_PROBE_CONCURRENCY (default: the monitor's default)")
    args = parser.parse_args()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"interval {INTERVAL:g} s, {args.seconds:g} s per size, {os.cpu_count()} cores, "
          f"load average at the start {load}\n")
    print("| targets | probes done vs expected | schedule lag p99 | monitor CPU | "
          "/api/status p95 | probe latency p50 | targets' CPU | UP at the end |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.seconds, args.concurrency)
        lag = "> 2.5 s" if row["lag_p99_ms"] == float("inf") else f"≤ {row['lag_p99_ms']:.0f} ms"
        print(f"| {size:,} | {row['done']:.2f} | {lag} | "
              f"{row['cpu'] * 100:.0f} % | {_ms(row['status_p95_ms'])} | "
              f"≤ {row['probe_p50_ms']:.0f} ms | {row['targets_cpu'] * 100:.0f} % | "
              f"{row['up']:.0f} |", flush=True)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at the end {load} (1 / 5 / 15 min)")


if __name__ == "__main__":
    main()
