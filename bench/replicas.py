"""Replicas benchmark: gateway throughput with 1, 2 and 3 replicas of v1, the requests lost
while 2 of 3 replicas are killed, and round-robin against least-outstanding, all in one run.

    python bench/replicas.py [--seconds 8] [--concurrency 16] [--only-balance]

Balance rows: three v1 replica processes and two real gateway processes following the same
route (the three replicas), one with MONITOR_GATEWAY_BALANCE=round_robin and one with
least_outstanding, measured in interleaved slices (wrk when installed): first with three
equal replicas, then with one replica slowed by the service's latency fault (a noisy
neighbour, a GC pause, a cold cache), where the rule matters.

Each row runs the real monitor (`python -m monitor run`) with a spec (MONITOR_SPEC) giving v1
N replicas, its spawned gateway, and the same keep-alive GET load as bench/gateway.py. The
kill row sends the dashboard's chaos `kill` (count 2) under load and counts every failed GET.
On this 2-core machine the load generator, the gateway and the replicas share the CPUs, so
the ratio shows what replicas buy when the service, not the machine, is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway import (  # noqa: E402
    Sample,
    Tally,
    chaos,
    free_port,
    load,
    python_sample,
    start_gateway,
    start_service,
    stop,
    wrk_sample,
)
from bench.processes import start_monitor, wait_until  # noqa: E402

PATH = "/books?q=whale&limit=2"
SPEC = """apiVersion: v1
kind: Service
metadata: {{name: books}}
spec:
  versions:
    - {{name: v1, command: [python, -m, services.v1], replicas: {n}}}
    - {{name: v2, command: [python, -m, services.v2]}}
    - {{name: v3, command: [python, -m, services.v3]}}
  readinessProbe: {{periodSeconds: 1, failureThreshold: 2, timeoutSeconds: 1}}
  livenessProbe: {{periodSeconds: 1, failureThreshold: 3, timeoutSeconds: 1}}
"""


def ready(status: dict, version: str = "v1") -> int:
    item = next(v for v in status["versions"] if v["name"] == version)
    return sum(1 for r in item["replicas"] or [] if r["ready"])


def run_monitor(n: int):
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-replicas-{n}-"))
    spec = tmp / "spec.yaml"
    spec.write_text(SPEC.format(n=n))
    monitor = start_monitor(tmp / "data", MONITOR_SPEC=str(spec), MONITOR_RESTART_DELAY="1",
                            ready_timeout=60)
    monitor.wait_for(lambda s: ready(s) == n and all(v["state"] == "up"
                                                     for v in s["versions"]), timeout=60)
    return monitor


def kill_two(monitor) -> None:
    with monitor.client() as client:
        page = client.get("/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, "no csrf token on the overview"
        answer = client.post("/actions/chaos/v1/kill",
                             data={"csrf_token": token.group(1), "count": "2"},
                             headers={"Sec-Fetch-Site": "same-origin", "Origin": monitor.url},
                             follow_redirects=False)
        assert answer.status_code == 303, answer.text


def throughput(n: int, args) -> tuple[Tally, float]:
    monitor = run_monitor(n)
    try:
        port = int(monitor.gateway.rsplit(":", 1)[1])
        asyncio.run(load(port, PATH, workers=args.concurrency, seconds=1.0, timeout=5.0))
        tally = asyncio.run(load(port, PATH, workers=args.concurrency, seconds=args.seconds,
                                 timeout=5.0))
        return tally, len(tally.latencies) / args.seconds
    finally:
        monitor.stop()


def killed(args) -> tuple[Tally, float]:
    monitor = run_monitor(3)
    try:
        port = int(monitor.gateway.rsplit(":", 1)[1])
        timer = threading.Timer(2.0, kill_two, args=(monitor,))
        started = time.monotonic()
        timer.start()
        tally = asyncio.run(load(port, PATH, workers=args.concurrency,
                                 seconds=args.seconds + 4, timeout=5.0))
        timer.join()
        healed = wait_until(lambda: ready(monitor.status()) == 3, timeout=60,
                            what="three ready replicas again")
        return tally, time.monotonic() - started if healed else 0.0
    finally:
        monitor.stop()


BALANCES = ("round_robin", "least_outstanding")
SLICES = 4


def balance_rows(args) -> dict[tuple[str, str], Sample]:
    """Round-robin against least-outstanding over three replicas, side by side."""
    token = secrets.token_urlsafe(16)
    tmp = Path(tempfile.mkdtemp(prefix="bench-balance-"))
    ports = [free_port() for _ in range(3)]
    replicas = [start_service("v1", port, token) for port in ports]
    urls = tuple(f"http://127.0.0.1:{port}" for port in ports)
    gateways: dict[str, tuple[int, object]] = {}
    wrk = shutil.which("wrk")
    results: dict[tuple[str, str], Sample] = {}
    try:
        for rule in BALANCES:
            port = free_port()
            gateways[rule] = (port, start_gateway(
                port, {"v1": urls[0]}, tmp / rule, replicas={"v1": urls},
                MONITOR_GATEWAY_BALANCE=rule))
        for case in ("3 equal replicas", "one replica +20 ms (latency fault)"):
            if case.startswith("one"):
                chaos(ports[0], token, "latency", {"ms": 20})
            for _ in range(SLICES):  # interleaved: a noisy neighbour hits both alike
                for rule, (port, _) in gateways.items():
                    secs = args.seconds / SLICES
                    sample = wrk_sample(wrk, port, PATH, args.concurrency, secs) if wrk \
                        else python_sample(port, PATH, args.concurrency, secs)
                    results[case, rule] = results[case, rule].merge(sample) \
                        if (case, rule) in results else sample
    finally:
        for _, proc in gateways.values():
            stop(proc)  # type: ignore[arg-type]
        for proc in replicas:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = (max(1, round(args.seconds / SLICES)) if wrk else args.seconds / SLICES) * SLICES
    print(f"\nRound-robin against least-outstanding: 3 replicas of v1, {args.concurrency} "
          f"connections, {elapsed:g} s each in {SLICES} interleaved slices, "
          f"load generator {'wrk' if wrk else 'Python'}")
    print("| replicas | balance | req/s | p50 ms | p99 ms | failed |")
    print("|---|---|---:|---:|---:|---:|")
    for (case, rule), sample in results.items():
        print(f"| {case} | {rule} | {sample.total / elapsed:.0f} | {sample.p50:.2f} "
              f"| {sample.p99:.2f} | {sample.failed} |")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only-balance", action="store_true",
                        help="only round-robin against least-outstanding")
    args = parser.parse_args()
    balance_rows(args)
    if args.only_balance:
        return 0
    rows = [(n, *throughput(n, args)) for n in (1, 2, 3)]
    base = rows[0][2] or 1.0
    print(f"\nGateway throughput by replicas of v1 ({args.concurrency} connections, "
          f"{args.seconds:g} s each)")
    print(f"{'replicas':>8} | {'req/s':>8} | {'ratio to 1':>10} | {'p50 ms':>7} | "
          f"{'p99 ms':>7} | {'failed':>6}")
    for n, tally, rate in rows:
        print(f"{n:>8} | {rate:8.0f} | {rate / base:10.2f} | {tally.pct(0.5):7.2f} | "
              f"{tally.pct(0.99):7.2f} | {tally.failed:6d}")
    tally, healed_after = killed(args)
    print("\nKilling 2 of 3 replicas of v1 under load (target: 0 failed)")
    print(f"{'requests':>8} | {'failed':>6} | {'served by':>20} | {'3 ready again after':>19}")
    served = ", ".join(f"{k} {v}" for k, v in sorted(tally.served.items()))
    print(f"{tally.total:8d} | {tally.failed:6d} | {served:>20} | {healed_after:17.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
