"""Routing by service: the default service's `/books` against another service's `/films/books`
through one real gateway process, side by side in one run.

    python bench/gateway_services.py [--seconds 6] [--concurrency 16] [--loadgen auto|wrk|python]

Two book services (v1 each, one per service) on loopback, the real gateway process following
`route.json` and `routes/films.json` signed as the monitor signs them. The same GET workload
runs against both paths in interleaved slices (so a noisy neighbour hits both alike), at 1
connection and at ``--concurrency``; the table gives the gateway's CPU per request of each
path and its ratio to `/books` (the prefixed path does one dict lookup and one slice more).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway import (  # noqa: E402 - the repository root is put on the path first
    Sample,
    cpu_seconds,
    free_port,
    python_sample,
    start_gateway,
    start_service,
    stop,
    wrk_sample,
)

QUERY = "?q=Pride+and+Prejudice&limit=1"
ROUNDS = 6


def publish_films(data_dir: Path, url: str) -> None:
    """The film service's signed route file, as the monitor's publisher writes it."""
    from monitor.config import Settings
    from monitor.gateway.feed import service_file, write_atomically
    from monitor.gateway.route import PURPOSE, Route, encode
    from monitor.storage.keys import load_keys

    key = load_keys(Settings(data_dir=data_dir)).derive(PURPOSE)
    route = Route(epoch=0, active="v1", fallbacks=(), urls={"v1": url}, issued=time.time())
    path = service_file(data_dir, "films")
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_atomically(path, encode(replace(route, service="films"), key))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per path and concurrency")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args()
    wrk = shutil.which("wrk") if args.loadgen != "python" else None
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("--loadgen wrk: wrk is not installed")
    token = secrets.token_urlsafe(24)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-services-"))
    books_port, films_port, gw_port = free_port(), free_port(), free_port()
    procs = [start_service("v1", books_port, token), start_service("v1", films_port, token)]
    gateway = None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        publish_films(data_dir, f"http://127.0.0.1:{films_port}")
        gateway = start_gateway(gw_port, {"v1": f"http://127.0.0.1:{books_port}"}, data_dir)
        paths = {"/books": f"/books{QUERY}", "/films/books": f"/films/books{QUERY}"}

        def measure(path: str, conns: int, secs: float) -> Sample:
            return wrk_sample(wrk, gw_port, path, conns, secs) if wrk else \
                python_sample(gw_port, path, conns, secs)

        results: dict[tuple[str, int], Sample] = {}
        spent: dict[tuple[str, int], float] = {}
        for conns in (1, args.concurrency):
            for path in paths.values():
                measure(path, conns, 1.0)  # warm up
            for _ in range(ROUNDS):
                for name, path in paths.items():
                    before = cpu_seconds(gateway)
                    sample = measure(path, conns, args.seconds / ROUNDS)
                    spent[name, conns] = spent.get((name, conns), 0.0) + \
                        cpu_seconds(gateway) - before
                    results[name, conns] = results[name, conns].merge(sample) \
                        if (name, conns) in results else sample
        elapsed = (max(1, round(args.seconds / ROUNDS)) if wrk else args.seconds / ROUNDS) \
            * ROUNDS
        print(f"# Gateway routing by service (GET {QUERY}, {elapsed:g} s per row in {ROUNDS} "
              f"interleaved slices, load generator: {'wrk -t1' if wrk else 'Python asyncio'})\n")
        print("| path | connections | requests/s | p50 ms | p99 ms | gateway CPU us/req "
              "| CPU vs /books | failed |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for (name, conns), sample in results.items():
            cpu = spent[name, conns] / max(1, sample.total) * 1e6
            base = spent["/books", conns] / max(1, results["/books", conns].total) * 1e6
            print(f"| {name} | {conns} | {sample.total / elapsed:.0f} | {sample.p50:.2f} "
                  f"| {sample.p99:.2f} | {cpu:.0f} | {cpu / max(base, 1e-9):.2f} "
                  f"| {sample.failed} |")
        return 0
    finally:
        stop(gateway)
        for proc in procs:
            stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
