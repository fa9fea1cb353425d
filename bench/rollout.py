"""Rollout benchmark: a good canary, a bad canary and a BlueGreen rollout under GET load.

    python bench/rollout.py [--workers 3] [--interval 2]

Each row runs real v1..v3 services and the real monitor with its gateway; a spec gives the
rollout (analysis every `--interval` seconds) and a bounded GET load runs through the gateway
from before the start until a few seconds after the decision. Printed per rollout:

- time to decide: from the `rollout.start` audit row to `rollout.complete` or `rollout.abort`;
- requests answered by each version (the gateway's `X-Served-By`) and client-visible failures;
- for the bad canary (v2 answering 500 to 30 % of requests): its share of the gateway's
  attempts before the abort (from the failed analysis's measurement, against every request
  the clients sent while the canary had weight), and how long it had weight, against the
  target: at most the first step's weight, for at most one analysis interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import (  # noqa: E402
    MonitorProcess,
    all_versions_up,
    inject_fault,
    running_services,
    start_monitor,
)

TOKEN = "bench-rollout-token-0123456789abcdef"
FIRST_WEIGHT = 10
STRATEGIES = {
    "good canary": "{{strategy: Canary, steps: [{{setWeight: 10}}, {{setWeight: 50}}, "
                   "{{setWeight: 100}}], analysis: {{successRate: 0.95, intervalSeconds: {i}, "
                   "maxProbeFailures: 2, maxP99Ratio: 10}}}}",
    "bad canary": "{{strategy: Canary, steps: [{{setWeight: 10}}, {{setWeight: 50}}, "
                  "{{setWeight: 100}}], analysis: {{successRate: 0.95, intervalSeconds: {i}, "
                  "maxProbeFailures: 2, maxP99Ratio: 10}}}}",
    "bluegreen": "{{strategy: BlueGreen, scaleDownDelaySeconds: 60, "
                 "analysis: {{intervalSeconds: {i}, maxProbeFailures: 2}}}}",
}


@dataclass
class Answers:
    """(time.time(), status, served by) of every GET the load threads sent."""

    seen: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, url: str) -> None:
        deadline = time.monotonic() + 180
        with httpx.Client(base_url=url, timeout=10.0) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    answer = client.get("/books", params={"q": "whale", "limit": 2})
                    self.seen.append((time.time(), answer.status_code,
                                      answer.headers.get("x-served-by", "")))
                except httpx.HTTPError:
                    self.seen.append((time.time(), 0, ""))


def post(monitor: MonitorProcess, op: str, **form: str) -> None:
    import re

    with monitor.client() as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
        assert token, "no csrf token on the overview"
        answer = client.post(f"/actions/rollout/{op}", data={"csrf_token": token.group(1),
                                                             **form},
                             headers={"Sec-Fetch-Site": "same-origin", "Origin": monitor.url,
                                      "Accept": "application/json"})
        assert answer.status_code == 200, answer.text


def rows(monitor: MonitorProcess) -> list[dict[str, Any]]:
    with monitor.client() as client:
        found = client.get("/api/audit", params={"limit": 500}).json()["rows"]
    return sorted((r for r in found if r["action"].startswith("rollout.")),
                  key=lambda r: r["seq"])


def stamp(row: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(row["ts"]).replace("Z", "+00:00")).timestamp()


def details(row: dict[str, Any]) -> dict[str, Any]:
    value = row["params"]
    return json.loads(value) if isinstance(value, str) else dict(value)


def one(name: str, interval: float, workers: int) -> dict[str, Any]:
    with running_services(TOKEN) as services:
        tmp = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
        versions = ", ".join(f"{{name: {v}, url: '{u}'}}" for v, u in services.items())
        (tmp / "spec.yaml").write_text(
            "apiVersion: v1\nkind: Service\nmetadata: {name: books}\n"
            f"spec:\n  versions: [{versions}]\n"
            f"  rollout: {STRATEGIES[name].format(i=interval)}\n")
        monitor = start_monitor(tmp / "data", services=services,
                                MONITOR_SPEC=str(tmp / "spec.yaml"), MONITOR_CHAOS_TOKEN=TOKEN)
        answers = Answers()
        threads = [threading.Thread(target=answers.run, args=(monitor.gateway,), daemon=True)
                   for _ in range(workers)]
        try:
            monitor.wait_for(all_versions_up, timeout=30)
            for thread in threads:
                thread.start()
            time.sleep(2.0)
            if name == "bad canary":
                inject_fault(services["v2"], TOKEN, "errors", {"probability": 0.3})
            post(monitor, "start", target="v2")
            monitor.wait_for(lambda s: s["rollout"] is not None and s["rollout"]["state"] in (
                "completed", "aborted"), timeout=120)
            time.sleep(2.0)
            found = rows(monitor)
        finally:
            answers.stop.set()
            for thread in threads:
                thread.join(timeout=15)
            monitor.stop()
    return summarise(name, found, answers.seen, interval)


def summarise(name: str, found: list[dict[str, Any]], seen: list[tuple[float, int, str]],
              interval: float) -> dict[str, Any]:
    start = next(stamp(r) for r in found if r["action"] == "rollout.start")
    end_row = next(r for r in found if r["action"] in ("rollout.complete", "rollout.abort"))
    served: dict[str, int] = {}
    for _, status, by in seen:
        if status == 200:
            served[by] = served.get(by, 0) + 1
    result: dict[str, Any] = {
        "name": name, "decision": end_row["action"].removeprefix("rollout."),
        "decide_s": stamp(end_row) - start, "served": served,
        "failed": sum(1 for _, status, _ in seen if status != 200), "total": len(seen),
        "share": None, "exposed_s": None}
    steps = [r for r in found if r["action"] == "rollout.step"]
    failed = [r for r in found if r["action"] == "rollout.analysis" and r["outcome"] == "failed"]
    if name == "bad canary" and steps and failed:
        weighted_from, abort_at = stamp(steps[0]), stamp(end_row)
        sent = sum(1 for at, _, _ in seen if weighted_from <= at <= abort_at)
        attempts = details(failed[0])["measurement"]["canary_requests"]
        result["share"] = attempts / sent if sent else 0.0
        result["exposed_s"] = abort_at - weighted_from
        result["reason"] = failed[0]["reason"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    results = [one(name, args.interval, args.workers) for name in STRATEGIES]
    print(f"\nRollouts under GET load ({args.workers} clients, analysis every "
          f"{args.interval:g} s; target: 0 failed)")
    print(f"{'rollout':<12} | {'decision':>9} | {'decided after':>13} | {'requests':>8} | "
          f"{'served by':<26} | {'failed':>6}")
    for r in results:
        served = ", ".join(f"{k} {v}" for k, v in sorted(r["served"].items()))
        print(f"{r['name']:<12} | {r['decision']:>9} | {r['decide_s']:11.2f} s | "
              f"{r['total']:8d} | {served:<26} | {r['failed']:6d}")
    bad = next(r for r in results if r["name"] == "bad canary")
    if bad["share"] is not None:
        print(f"\nBad canary (30 % errors) before its abort ({bad['reason']})")
        print(f"{'canary share of attempts':>24} | {'target':>6} | {'ratio':>5} | "
              f"{'had weight for':>14} | {'target':>8} | {'ratio':>5}")
        share, exposed = bad["share"] * 100, bad["exposed_s"]
        print(f"{share:23.1f}% | {FIRST_WEIGHT:5d}% | {share / FIRST_WEIGHT:5.2f} | "
              f"{exposed:12.2f} s | {args.interval:6.2f} s | {exposed / args.interval:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
