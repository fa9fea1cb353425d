"""History benchmark: a year of audit rows, and what the audit views and verification cost.

    python bench/history.py [--rows 1000000] [--requests 40] [--checkpoint-every 60]

Seeds a fresh data dir with `--rows` audit rows spread over the last 365 days (a real HMAC
chain, computed row by row, bulk-inserted) and a checkpoint line per `--checkpoint-every`
seconds of that year in which rows were added (the running monitor writes one a minute when the
head moved, and one after each security-relevant row). Then, all in one run:
- starts the real monitor on it and prints the p95 of `/audit`, `/audit?action=failover` and
  `/api/audit?action=user` (sequential requests after one warm-up each);
- runs `audit verify` (incremental) and `audit verify --full` as processes: wall time and peak
  RSS;
- archives the rows older than 90 days (`audit archive`) and prints the database size before,
  after, and after VACUUM, and the segment files' size apart; then verifies again.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import free_ports, monitor_env, start_monitor  # noqa: E402
from monitor.config import load_settings  # noqa: E402
from monitor.storage import audit, checkpoints  # noqa: E402
from monitor.storage.keys import load_keys  # noqa: E402
from monitor.storage.store import Store  # noqa: E402

YEAR = 365 * 86_400.0
ACTIONS = [("login.failed", 30), ("access.denied", 8), ("chaos.inject", 14), ("chaos.reset", 14),
           ("replica.start", 10), ("replica.stop", 10), ("failover.automatic", 2),
           ("failover.manual", 1), ("incident.opened", 2), ("notice.sent", 6),
           ("spec.apply", 2), ("user.add", 0.5), ("user.disable", 0.5)]
COLUMNS = ("seq", "ts", "actor", "role", "source_ip", "user_agent", "action", "target", "params",
           "outcome", "reason", "request_id", "evidence", "prev_mac", "mac", "family")
# Peak RSS from VmHWM (per address space: reset at exec). getrusage's ru_maxrss would report
# the forking parent's peak, as Linux carries it over into the exec'd child.
RSS_WRAPPER = ("import sys, time; from monitor.__main__ import main, _parser; "
               "import monitor.storage.archive, monitor.storage.verifier; _parser(); "
               "t = time.perf_counter(); code = main(sys.argv[1:]); "
               "t = time.perf_counter() - t; hwm = next(int(line.split()[1]) for line in "
               "open('/proc/self/status') if line.startswith('VmHWM')); "
               "print('maxrss_kb', hwm, t, file=sys.stderr); sys.exit(code)")


def action_cycle() -> list[str]:
    """A deterministic mix: 1,000 actions in the weights above, repeated."""
    total = sum(weight for _, weight in ACTIONS)
    cycle: list[str] = []
    for name, weight in ACTIONS:
        cycle += [name] * round(1000 * weight / total)
    return cycle


def seed(data_dir: Path, rows: int, checkpoint_every: float, now: float) -> tuple[float, int]:
    """Insert `rows` chained rows and the checkpoint lines; returns (seconds, lines)."""
    started = time.perf_counter()
    settings = load_settings(data_dir=data_dir)
    key = load_keys(settings).audit
    store = Store(settings.db_url())
    store.create_all()
    conn = sqlite3.connect(data_dir / "monitor.db")
    conn.execute("PRAGMA synchronous=OFF")
    cycle = action_cycle()
    first = now - YEAR
    prev, batch, heads = audit.GENESIS, [], []
    last_bucket = None
    for seq in range(1, rows + 1):
        at = first + YEAR * (seq - 1) / rows
        action = cycle[seq % len(cycle)]
        fields = {"seq": seq, "ts": audit.utc_iso(at), "actor": "monitor" if seq % 3 else "olga",
                  "role": "system" if seq % 3 else "operator",
                  "source_ip": "" if seq % 3 else "10.0.0.7", "user_agent": "",
                  "action": action, "target": f"v{seq % 3 + 1}",
                  "params": json.dumps({"n": seq % 97}), "outcome": "ok",
                  "reason": f"seeded row {seq}", "request_id": f"r{seq:08x}",
                  "evidence": "[]", "prev_mac": prev}
        mac = audit.compute_mac(key, fields)
        batch.append((*fields.values(), mac, audit.family_of(action)))
        prev = mac
        bucket = int(at // checkpoint_every)
        if bucket != last_bucket:
            heads.append((seq, mac, at))
            last_bucket = bucket
        if len(batch) == 50_000:
            _insert(conn, batch)
            batch = []
    _insert(conn, batch)
    conn.close()
    lines = _write_checkpoints(store, key, data_dir / "audit.checkpoints", heads[1:] + [
        (rows, prev, now)])
    store.dispose()
    return time.perf_counter() - started, lines


def _insert(conn: sqlite3.Connection, batch: list[tuple[object, ...]]) -> None:
    marks = ",".join("?" * len(COLUMNS))
    with conn:
        conn.executemany(f"INSERT INTO audit ({','.join(COLUMNS)}) VALUES ({marks})",  # noqa: S608
                         batch)


def _write_checkpoints(store: Store, key: bytes, path: Path,
                       heads: list[tuple[int, str, float]]) -> int:
    """Checkpoint lines as the monitor writes them (chained, signed), then the anchor."""
    prev, number = checkpoints.GENESIS, 0
    with open(path, "w", encoding="utf-8") as out:
        for seq, mac, at in heads:
            number += 1
            entry = {"n": number, "seq": seq, "mac": mac, "at": audit.utc_iso(at), "prev": prev}
            entry["sig"] = prev = checkpoints.sign_line(key, entry)
            out.write(json.dumps(entry, sort_keys=True) + "\n")
    checkpoints.record_anchor(store, key, number, prev, checkpoints.anchor_id(store, path))
    return number


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 2 else values[0]


def page_times(data_dir: Path, requests: int) -> dict[str, float]:
    monitor = start_monitor(data_dir, ready_timeout=120.0)
    results: dict[str, float] = {}
    try:
        with monitor.client() as client:
            client.timeout = 300.0
            for path in ("/audit", "/audit?action=failover", "/api/audit?action=user",
                         "/api/audit?action=failover&before=500000"):
                assert client.get(path).status_code == 200, path  # warm-up
                times = []
                for _ in range(requests):
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                results[path] = p95(times)
    finally:
        monitor.stop()
    return results


def cli_run(data_dir: Path, *args: str) -> tuple[float, float, float, int]:
    """(process seconds, command seconds (its modules imported beforehand), peak RSS in MB,
    exit code) of `python -m monitor ARGS`."""
    env = monitor_env(data_dir, *free_ports(2))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    took = time.perf_counter() - started
    rss, inside = next(((int(line.split()[1]), float(line.split()[2]))
                        for line in done.stderr.splitlines() if line.startswith("maxrss_kb")),
                       (0, 0.0))
    if done.returncode not in (0, 1):
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
    return took, inside, rss / 1024, done.returncode


def mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir()) / 1e6
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=float, default=60.0)
    args = parser.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="history-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        took, lines = seed(data_dir, args.rows, args.checkpoint_every, now)
        database = data_dir / "monitor.db"
        print(f"seeded {args.rows:,} audit rows and {lines:,} checkpoint lines in {took:.1f} s; "
              f"database {mb(database):.0f} MB")
        print("\n| request | p95 (ms) |\n|---|---:|")
        for path, value in page_times(data_dir, args.requests).items():
            print(f"| `{path}` | {value:.1f} |")
        print("\n| command | process (s) | command (s) | peak RSS (MB) | exit |\n"
              "|---|---:|---:|---:|---:|")
        before = datetime.fromtimestamp(now - 90 * 86_400, UTC).date().isoformat()
        size_before = mb(database)  # verify reads only: the size before the archive
        for label, command in (
                ("audit verify", ("audit", "verify")),
                ("audit verify --full", ("audit", "verify", "--full")),
                (f"audit archive --before {before}", ("audit", "archive", "--before", before)),
                ("audit verify (after archive)", ("audit", "verify")),
                ("audit verify --full (after archive)", ("audit", "verify", "--full"))):
            seconds, inside, rss, code = cli_run(data_dir, *command)
            print(f"| `{label}` | {seconds:.2f} | {inside:.2f} | {rss:.0f} | {code} |")
        size_after = mb(database)
        conn = sqlite3.connect(database)
        conn.execute("VACUUM")
        conn.close()
        print("\n| storage | MB |\n|---|---:|")
        print(f"| database before archive | {size_before:.0f} |")
        print(f"| database after archive (before VACUUM) | {size_after:.0f} |")
        print(f"| database after archive and VACUUM | {mb(database):.0f} |")
        print(f"| signed segment files (apart) | {mb(data_dir / 'audit-archive'):.0f} |")
        print(f"| checkpoint file | {mb(data_dir / 'audit.checkpoints'):.0f} |")


if __name__ == "__main__":
    main()
