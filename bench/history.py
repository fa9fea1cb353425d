"""History benchmark: a year of probe history and audit rows, and what the pages cost.

    python bench/history.py [--rows 1000000] [--requests 40] [--gap 0.25] [--checkpoint-every 60]

Seeds a fresh data dir (bench/history_seed.py): a year of probe history at the default ages
(raw probes for 24 h, minute rollups for 30 days, hourly ones for a year) for 9 series (3
services x 3 versions once probes have a service column, 9 versions of one service until then:
`history_seed.SERVICE_COLUMN`), and `--rows` chained audit rows spread over the year with a
checkpoint line per `--checkpoint-every` seconds in which rows were added. Then, in one run:
- archives the audit rows older than 90 days (`audit archive`, a process: time and peak RSS)
  and VACUUMs the database;
- starts the real monitor on it and prints the p95 of `/`, `/audit`, `/audit?action=failover`,
  `/health-log`, a deep `/api/probes` keyset page and a few more (sequential requests after one
  warm-up each);
- runs `audit verify` (incremental) and `audit verify --full` as processes: wall time, the
  command's own time and peak RSS;
- prints the database size and, apart, the signed segment files and the checkpoint file;
- and each target against its figure.
"""

from __future__ import annotations

import argparse
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

from bench import history_seed  # noqa: E402
from bench.processes import free_ports, monitor_env, start_monitor  # noqa: E402

# Peak RSS from VmHWM (per address space: reset at exec). getrusage's ru_maxrss would report
# the forking parent's peak, as Linux carries it over into the exec'd child.
RSS_WRAPPER = ("import sys, time; from monitor.__main__ import main, _parser; "
               "import monitor.storage.archive, monitor.storage.verifier; _parser(); "
               "t = time.perf_counter(); code = main(sys.argv[1:]); "
               "t = time.perf_counter() - t; hwm = next(int(line.split()[1]) for line in "
               "open('/proc/self/status') if line.startswith('VmHWM')); "
               "print('maxrss_kb', hwm, t, file=sys.stderr); sys.exit(code)")
PAGE_TARGET_MS = 100.0
ARCHIVE_DAYS = 90


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 2 else values[0]


def deep_probe_id(database: Path, now: float) -> int:
    """A probe id about 20 hours back: the keyset of a deep /api/probes page."""
    with sqlite3.connect(database) as conn:
        row = conn.execute("SELECT id FROM probe WHERE at >= ? ORDER BY at LIMIT 1",
                           (now - 20 * 3600,)).fetchone()
    return int(row[0])


def page_times(data_dir: Path, requests: int, deep_id: int, gap: float) -> dict[str, float]:
    """p95 per path of `requests` sequential requests, `gap` seconds apart (so the pages'
    shared computations, such as the overview chart's 2 s cache, are redone as for a viewer
    who polls)."""
    monitor = start_monitor(data_dir, ready_timeout=120.0)
    results: dict[str, float] = {}
    try:
        with monitor.client() as client:
            client.timeout = 300.0
            for path in ("/", "/audit", "/audit?action=failover", "/health-log",
                         f"/api/probes?before={deep_id}&limit=100",
                         f"/health-log?version=v2&before={deep_id}",
                         "/api/audit?action=user", "/charts?window=7d"):
                assert client.get(path).status_code == 200, path  # warm-up
                times = []
                for _ in range(requests):
                    time.sleep(gap)
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


def vacuum(database: Path) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(database)
    conn.execute("VACUUM")
    conn.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=float, default=60.0)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between requests")
    args = parser.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="history-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        database = data_dir / "monitor.db"
        took, lines = history_seed.seed_audit(data_dir, args.rows, args.checkpoint_every, now)
        print(f"seeded {args.rows:,} audit rows and {lines:,} checkpoint lines in {took:.1f} s")
        started = time.perf_counter()
        counts = history_seed.seed_probes(database, now)
        shape = ("3 services x 3 versions" if history_seed.SERVICE_COLUMN else
                 "9 versions of one service (probes have no service column yet)")
        print(f"seeded probe history for {shape}: " + ", ".join(
            f"{table} {number:,} rows" for table, number in counts.items()) +
            f" in {time.perf_counter() - started:.1f} s; database {mb(database):.0f} MB")

        print("\n| command | process (s) | command (s) | peak RSS (MB) | exit |\n"
              "|---|---:|---:|---:|---:|")
        before = datetime.fromtimestamp(now - ARCHIVE_DAYS * 86_400, UTC).date().isoformat()
        figures: dict[str, tuple[float, float, float, int]] = {}

        def command(label: str, *argv: str) -> None:
            figures[label] = seconds, inside, rss, code = cli_run(data_dir, *argv)
            print(f"| `{label}` | {seconds:.2f} | {inside:.2f} | {rss:.0f} | {code} |",
                  flush=True)

        command(f"audit archive --before {before}", "audit", "archive", "--before", before)
        size_archived = mb(database)
        print(f"| VACUUM (the monitor stopped) | {vacuum(database):.2f} | | | |", flush=True)
        deep_id = deep_probe_id(database, now)
        pages = page_times(data_dir, args.requests, deep_id, args.gap)
        command("audit verify", "audit", "verify")
        command("audit verify --full", "audit", "verify", "--full")

        print("\n| request | p95 (ms) |\n|---|---:|")
        for path, value in pages.items():
            print(f"| `{path}` | {value:.1f} |")
        size = mb(database)
        print("\n| storage | MB |\n|---|---:|")
        print(f"| database after the archive, before VACUUM | {size_archived:.0f} |")
        print(f"| database after the archive and VACUUM (with -wal) | {size:.0f} |")
        print(f"| signed segment files (apart) | {mb(data_dir / 'audit-archive'):.0f} |")
        print(f"| checkpoint file (apart) | {mb(data_dir / 'audit.checkpoints'):.0f} |")

        worst = max(pages.values())
        incremental, full = figures["audit verify"], figures["audit verify --full"]
        print("\n| target | figure | met |\n|---|---:|---|")
        for name, figure, met in (
                ("every page p95 < 100 ms", f"{worst:.0f} ms (worst)", worst < PAGE_TARGET_MS),
                ("incremental verify < 1 s (the command)", f"{incremental[1]:.2f} s",
                 incremental[1] < 1.0),
                ("--full verify < 200 MB peak RSS", f"{full[2]:.0f} MB", full[2] < 200),
                ("database < 500 MB", f"{size:.0f} MB", size < 500)):
            print(f"| {name} | {figure} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    main()
