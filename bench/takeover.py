"""Leader takeover with two monitors on one PostgreSQL: kill -9 and SIGSTOP of the leader.

Every trial starts a fresh database and two monitors (`a` leads, `b` follows) watching the same
three services, puts v1 in an incident (100 % errors) and at once kills (SIGKILL) or pauses
(SIGSTOP for 2 x TTL, then SIGCONT) the leader. It measures, per trial kind:

- takeover: from the signal until the follower holds the lease (database clock and lease row);
- duplicate decisions: `failover.automatic` rows beyond the one the incident needs;
- duplicate emails: failover emails beyond one (a real aiosmtpd server receives them);
- chain breaks: `python -m monitor audit verify` exiting non-zero;
- fenced writes: rows written by the old leader after SIGCONT (a trigger logs the writer).

    python bench/takeover.py [--trials 20] [--ttl 5] [--kinds kill,stop]

Targets with the defaults: takeover median <= TTL + 1 s, max <= 2 x TTL; zero duplicates,
chain breaks and fenced writes. Needs Debian's PostgreSQL 15 (a private cluster is started).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.ha import HaSystem, ha_system  # noqa: E402
from tests.storage.postgres import missing_reason, start_cluster  # noqa: E402

SETTLE_S = 3.0  # after the failover: time for a duplicate decision or email to show up


def trial(system: HaSystem, kind: str) -> dict[str, float]:
    system.start_pair()
    system.inbox.messages.clear()
    system.chaos("v1", "reset")
    old = system.wait_leader(timeout=30)
    new = next(name for name in system.monitors if name != old)
    leader = system.monitors[old]
    system.chaos("v1", "errors", {"probability": 1.0})
    started = time.monotonic()
    leader.proc.send_signal(signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
    system.wait_leader(timeout=10 * system.ttl, other_than=old)
    takeover = time.monotonic() - started
    system.monitors[new].wait_for(lambda s: s["active"] == "v2", timeout=60)
    fenced = 0
    if kind == "stop":
        time.sleep(max(0.0, 2 * system.ttl - (time.monotonic() - started)))
        resumed_at = system.db_now()
        leader.proc.send_signal(signal.SIGCONT)
        time.sleep(SETTLE_S)
        fenced = len(system.writes_by(old, resumed_at))
    system.wait_mail(1, timeout=60)
    time.sleep(SETTLE_S)
    failover_mails = [m for m in system.inbox.messages if "v1 -> v2" in str(m["Subject"])]
    code, _ = system.verify_audit(new)
    system.chaos("v1", "reset")
    decisions = len(system.actions("failover.automatic"))
    return {"takeover": takeover, "failovers": decisions, "emails": len(failover_mails),
            "dup_decisions": max(0, decisions - 1),
            "dup_emails": max(0, len(failover_mails) - 1),
            "chain_breaks": int(code != 0), "fenced_writes": fenced}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--kinds", default="kill,stop")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop = clean up what we started
    if reason := missing_reason():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    cluster = start_cluster()
    results: dict[str, list[dict[str, float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                ha_system(cluster, Path(tmp), ttl=args.ttl) as system:
            for kind in args.kinds.split(","):
                results[kind] = []
                for number in range(1, args.trials + 1):
                    result = trial(system, kind)
                    results[kind].append(result)
                    print(f"{kind} trial {number}: takeover {result['takeover']:.2f} s",
                          file=sys.stderr, flush=True)
    finally:
        cluster.stop()
    report(results, args.ttl)
    return 0


def report(results: dict[str, list[dict[str, float]]], ttl: float) -> None:
    print(f"\nLeader takeover, lease TTL {ttl:g} s, renew every {ttl / 3:.2f} s "
          f"(targets: median <= {ttl + 1:g} s, max <= {2 * ttl:g} s, all counts 0)\n")
    print("| kind | trials | takeover min | median | max | median / (TTL+1) | max / (2 TTL) "
          "| failovers | emails | dup decisions | dup emails | chain breaks | fenced writes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, rows in results.items():
        times = [r["takeover"] for r in rows]
        total = {key: int(sum(r[key] for r in rows))
                 for key in ("failovers", "emails", "dup_decisions", "dup_emails",
                             "chain_breaks", "fenced_writes")}
        median = statistics.median(times)
        label = "kill -9" if kind == "kill" else "SIGSTOP 2xTTL"
        print(f"| {label} | {len(rows)} | {min(times):.2f} s | {median:.2f} s | "
              f"{max(times):.2f} s | {median / (ttl + 1):.2f} | {max(times) / (2 * ttl):.2f} | "
              + " | ".join(str(value) for value in total.values()) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
