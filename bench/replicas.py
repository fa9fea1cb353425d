"""Replicas benchmark: gateway throughput with 1, 2 and 3 replicas of v1, and the requests
lost while 2 of 3 replicas are killed, all in one run.

    python bench/replicas.py [--seconds 8] [--concurrency 16]

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
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway import Tally, load  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
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
