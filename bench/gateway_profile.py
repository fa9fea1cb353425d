"""Where the gateway's CPU goes: the real gateway process under cProfile (CPU-time clock).

    python bench/gateway_profile.py [--seconds 5] [--concurrency 16] [--top 30] [--no-profile]

The backend is a minimal HTTP/1.1 responder (a fixed 300-byte JSON answer from an asyncio
Protocol), so the load measures the gateway and not a book service. The gateway runs as
`python -m monitor gateway` following a signed route (v1, then v2), with cProfile on the
thread's CPU time (`time.thread_time`: a wall clock would charge the gateway for the time
the other processes held the CPU). Prints the gateway's CPU per request measured without
the profiler (psutil, same run), then the profile's top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway import (  # noqa: E402
    cpu_seconds,
    free_port,
    python_sample,
    start_gateway,
    stop,
    wait_http,
    wrk_sample,
)

BODY = b'{"items": [{"id": "pride", "title": "Pride and Prejudice"}], "total": 1}' * 4
PROFILED = """import cProfile, runpy, sys, time
sys.argv = ["monitor", "gateway"]
profile = cProfile.Profile(time.thread_time)
try:
    profile.runcall(runpy.run_module, "monitor", run_name="__main__")
except SystemExit:
    pass
profile.dump_stats(%r)
"""


class Responder(asyncio.Protocol):
    """Answers every request head with the same 200."""

    ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
              b"\r\n%s" % (len(BODY), BODY))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.transport.write(self.ANSWER)


def serve_responder(port: int) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Responder, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def start_responder() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--responder", str(port)])
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the responder did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-profile", action="store_true", help="only the CPU per request")
    parser.add_argument("--responder", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.responder:
        serve_responder(args.responder)
        return 0
    wrk = shutil.which("wrk")
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-profile-"))
    backends = [start_responder() for _ in range(2)]
    urls = {"v1": backends[0][1], "v2": backends[1][1]}
    path = "/books?q=pride&limit=1"
    try:
        port = free_port()
        gateway = start_gateway(port, urls, tmp / "plain")
        print("| connections | requests/s | gateway CPU us/req (no profiler) |\n|---:|---:|---:|")
        for conns in (1, args.concurrency):
            before = cpu_seconds(gateway)
            sample = wrk_sample(wrk, port, path, conns, args.seconds) if wrk \
                else python_sample(port, path, conns, args.seconds)
            spent = cpu_seconds(gateway) - before
            print(f"| {conns} | {sample.total / args.seconds:.0f} "
                  f"| {spent / max(1, sample.total) * 1e6:.0f} |")
        stop(gateway)
        if args.no_profile:
            return 0
        out = tmp / "gateway.prof"
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")},
               "MONITOR_DATA_DIR": str(tmp / "plain"), "MONITOR_GATEWAY_PORT": str(port),
               "PYTHONPATH": str(ROOT)}
        profiled = subprocess.Popen([sys.executable, "-c", PROFILED % str(out)], cwd=ROOT,
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}{path}", proc=profiled)
        sample = wrk_sample(wrk, port, path, args.concurrency, args.seconds) if wrk \
            else python_sample(port, path, args.concurrency, args.seconds)
        profiled.send_signal(signal.SIGTERM)
        profiled.wait(timeout=30)
        print(f"\nProfile of {sample.total} requests at {args.concurrency} connections "
              "(own CPU time; start-up imports included, they are not per request):\n")
        pstats.Stats(str(out)).sort_stats("tottime").print_stats(args.top)
    finally:
        for proc, _ in backends:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
