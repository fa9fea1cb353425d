"""Gateway benchmark: overhead against direct access (and nginx), and failover under load.

    python bench/gateway.py [--seconds 4] [--concurrency 16] [--failover-seconds 30] [--quick]

Everything runs on loopback in separate processes: three book services, the gateway (uvicorn,
its own process so it does not share the load generator's event loop) and, when installed,
nginx. The load generator is a minimal keep-alive HTTP/1.1 client on raw asyncio streams, the
same for every target, so the figures compare the servers and not the client.

The gateway's router here is a STAND-IN for the monitor's engine (see ProbingRouter): it probes
/health and the canary every 0.25 s and orders candidates by the last result. The real monitor
decides more carefully (fall/rise streaks, cooldown, ejection), so it reacts more slowly; the
gateway's retries are what keep crash, hang and error faults invisible either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("v1", "v2", "v3")
FAULTS = {  # name -> (chaos endpoint, parameters)
    "crash": ("crash", {}),
    "hang": ("hang", {}),
    "errors 100%": ("errors", {"probability": 1.0}),
    "silent corrupt": ("corrupt", {"silent": True}),
}
TARGET_ADDED_P50_MS = 2.0
TARGET_RPS_RATIO = 0.5
ROUNDS = 6  # each overhead target runs in this many interleaved slices


# -- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, *, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    import httpx

    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout:g} s")


def start_service(version: str, port: int, token: str) -> subprocess.Popen:
    env = {**os.environ, "SERVICE_CHAOS_TOKEN": token, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", f"services.{version}", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health/live", proc=proc)
    return proc


def start_gateway(port: int, urls: dict[str, str]) -> subprocess.Popen:
    backends = ",".join(f"{v}={u}" for v, u in urls.items())
    proc = subprocess.Popen([sys.executable, __file__, "--serve-gateway", str(port),
                             "--backends", backends], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_http(f"http://127.0.0.1:{port}/health/live", proc=proc)
    return proc


def start_nginx(port: int, upstream_port: int, tmp: Path) -> subprocess.Popen | None:
    nginx = shutil.which("nginx")
    if nginx is None:
        return None
    user = "user root root;" if os.geteuid() == 0 else ""
    temp = "\n".join(f"  {kind}_temp_path {tmp}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temp}
  upstream books {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://books;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    proc = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health/live", proc=proc)
    return proc


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# -- the gateway process and its stand-in router -----------------------------------------------

class ProbingRouter:
    """STAND-IN for the monitor's engine: every ``interval`` it probes each version's /health
    and the canary query (so a silently corrupt catalog counts as down); candidates are the
    healthy versions in priority order, then the others (so the gateway can still try them)."""

    def __init__(self, urls: dict[str, str], *, interval: float = 0.25, timeout: float = 0.5):
        self.urls = urls
        self.interval = interval
        self.timeout = timeout
        self.healthy = dict.fromkeys(urls, True)

    def route_candidates(self) -> list[tuple[str, str]]:
        order = sorted(self.urls, key=lambda v: not self.healthy[v])  # stable: keeps priority
        return [(v, self.urls[v]) for v in order]

    def report_gateway_failure(self, version: str, failure: str) -> None:
        """Ignored: the stand-in reacts to its own probes only (the engine would probe sooner)."""

    async def run(self) -> None:
        import httpx

        from services.bookservice.canary import CANARY_QUERY, book_digest, expected_canary_digest

        expected = expected_canary_digest()

        async def probe(client: httpx.AsyncClient, url: str) -> bool:
            try:
                health = await client.get(f"{url}/health")
                canary = await client.get(f"{url}/books",
                                          params={"q": CANARY_QUERY, "limit": 1})
                return health.status_code == 200 and canary.status_code == 200 \
                    and book_digest(canary.json()["items"][0]) == expected
            except (httpx.HTTPError, ValueError, LookupError):
                return False

        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                results = await asyncio.gather(*(probe(client, u) for u in self.urls.values()))
                self.healthy = dict(zip(self.urls, results, strict=True))
                await asyncio.sleep(self.interval)


def serve_gateway(port: int, backends: str) -> None:
    import uvicorn

    from monitor.gateway.app import create_gateway

    urls = dict(item.split("=", 1) for item in backends.split(","))
    router = ProbingRouter(urls)

    async def main() -> None:
        prober = asyncio.create_task(router.run())
        config = uvicorn.Config(create_gateway(router), host="127.0.0.1", port=port,
                                log_level="warning", access_log=False, lifespan="on",
                                server_header=False, date_header=False)
        try:
            await uvicorn.Server(config).serve()
        finally:
            prober.cancel()

    asyncio.run(main())


# -- load generator -----------------------------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for GETs."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                          f"User-Agent: bench\r\n\r\n".encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readuntil(b"\r\n")
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    wrong: int = 0
    served: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def merge(self, other: Tally) -> Tally:
        served = {v: self.served.get(v, 0) + other.served.get(v, 0)
                  for v in {*self.served, *other.served}}
        failures = {k: self.failures.get(k, 0) + other.failures.get(k, 0)
                    for k in {*self.failures, *other.failures}}
        return Tally(self.latencies + other.latencies, self.failed + other.failed,
                     self.wrong + other.wrong, served, failures)

    @property
    def total(self) -> int:
        return len(self.latencies) + self.failed

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def load(port: int, path: str, *, workers: int, seconds: float, timeout: float,
               check=None) -> Tally:
    """``workers`` connections each sending GETs back to back for ``seconds``. A request fails
    on a transport error, a timeout or a non-200 answer; ``check(body)`` flags wrong answers."""
    tally = Tally()
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        conn = Conn(port)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                status, headers, body = await asyncio.wait_for(conn.get(path), timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError) as exc:
                conn.close()
                kind = type(exc).__name__
                tally.failed += 1
                tally.failures[kind] = tally.failures.get(kind, 0) + 1
                await asyncio.sleep(0.05)  # the same pause after a failure for every client
                continue
            if status != 200:
                tally.failed += 1
                tally.failures[f"HTTP {status}"] = tally.failures.get(f"HTTP {status}", 0) + 1
                await asyncio.sleep(0.05)
                continue
            tally.latencies.append(time.perf_counter() - started)
            by = headers.get("x-served-by", "direct")
            tally.served[by] = tally.served.get(by, 0) + 1
            if check is not None and not check(body):
                tally.wrong += 1
        conn.close()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return tally


# -- the two parts ------------------------------------------------------------------------------

def canary_check():
    from services.bookservice.canary import book_digest, expected_canary_digest

    expected = expected_canary_digest()

    def check(body: bytes) -> bool:
        try:
            return book_digest(json.loads(body)["items"][0]) == expected
        except (ValueError, LookupError):
            return False

    return check


def cpu_seconds(proc: subprocess.Popen | None) -> float:
    """User + system CPU of a process and its children (nginx workers) so far."""
    import psutil

    if proc is None:
        return 0.0
    try:
        main = psutil.Process(proc.pid)
        total = 0.0
        for p in [main, *main.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


def overhead(targets: dict[str, tuple[int, subprocess.Popen | None]], backend, path: str,
             args) -> dict[tuple[str, int], Tally]:
    """The same GET workload against each target, unloaded (1 connection: the latency a proxy
    adds) and saturated (``--concurrency`` connections: throughput; there p50 also holds the
    queueing of a slower server, by Little's law p50 ~ connections / throughput)."""
    results: dict[tuple[str, int], Tally] = {}
    spent: dict[tuple[str, int], list[float]] = {}
    for conc in (1, args.concurrency):
        for port, _ in targets.values():  # warm up connections and caches
            asyncio.run(load(port, path, workers=conc, seconds=0.3, timeout=10))
        for _ in range(ROUNDS):  # interleaved, so a noisy neighbour hits every target alike
            for name, (port, proxy) in targets.items():
                before = cpu_seconds(proxy), cpu_seconds(backend)
                tally = asyncio.run(load(port, path, workers=conc,
                                         seconds=args.seconds / ROUNDS, timeout=10))
                after = cpu_seconds(proxy), cpu_seconds(backend)
                results[name, conc] = results[name, conc].merge(tally) \
                    if (name, conc) in results else tally
                total = spent.setdefault((name, conc), [0.0, 0.0])
                total[0] += after[0] - before[0]
                total[1] += after[1] - before[1]
    cpu = {key: (s[0] / max(1, results[key].total) * 1e6, s[1] / max(1, results[key].total) * 1e6)
           for key, s in spent.items()}
    print(f"\n## Overhead: GET {path}, keep-alive connections, {args.seconds:g} s per target "
          f"in {ROUNDS} interleaved slices\n")
    print("| target | connections | requests/s | p50 ms | p99 ms | rps vs direct "
          "| added p50 ms | proxy CPU us/req | v1 CPU us/req | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, conc), t in results.items():
        direct = results["direct (v1)", conc]
        proxy_cpu, backend_cpu = cpu[name, conc]
        print(f"| {name} | {conc} | {t.total / args.seconds:.0f} | {t.pct(0.5):.2f} "
              f"| {t.pct(0.99):.2f} | {t.total / max(1, direct.total):.2f} "
              f"| {t.pct(0.5) - direct.pct(0.5):+.2f} "
              f"| {'-' if targets[name][1] is None else f'{proxy_cpu:.0f}'} "
              f"| {backend_cpu:.0f} | {t.failed} |")
    return results


def chaos(port: int, token: str, fault: str, params: dict) -> None:
    import httpx

    try:
        httpx.post(f"http://127.0.0.1:{port}/chaos/{fault}", json=params, timeout=2.0,
                   headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    except httpx.HTTPError:
        if fault != "crash":  # a crash may end the process before it answers
            raise


async def wait_served_by(port: int, path: str, version: str, *, timeout: float = 15.0) -> None:
    conn, streak, until = Conn(port), 0, time.monotonic() + timeout
    while streak < 5:
        if time.monotonic() > until:
            raise SystemExit(f"gateway did not route to {version} within {timeout:g} s")
        try:
            _, headers, _ = await conn.get(path)
            streak = streak + 1 if headers.get("x-served-by") == version else 0
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
        await asyncio.sleep(0.05)
    conn.close()


async def one_fault(name: str, svc_ports: dict[str, int], gw_port: int, path: str, token: str,
                    seconds: float, concurrency: int) -> tuple[Tally, Tally]:
    fault, params = FAULTS[name]
    check = canary_check()

    async def inject() -> None:
        await asyncio.sleep(min(2.0, seconds / 4))
        await asyncio.to_thread(chaos, svc_ports["v1"], token, fault, params)

    gateway, direct, _ = await asyncio.gather(
        load(gw_port, path, workers=concurrency, seconds=seconds, timeout=15, check=check),
        load(svc_ports["v1"], path, workers=4, seconds=seconds, timeout=2, check=check),
        inject())
    return gateway, direct


def start_real_monitor(svc_ports: dict[str, int], token: str):
    """`python -m monitor run` watching the bench's services, with a fresh data directory."""
    from bench.processes import FAST, all_versions_up, start_monitor

    data_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-monitor-"))
    monitor = start_monitor(data_dir, MONITOR_CHAOS_TOKEN=token, services={
        v: f"http://127.0.0.1:{p}" for v, p in svc_ports.items()})
    monitor.wait_for(all_versions_up, timeout=20)
    time.sleep(float(FAST["MONITOR_STARTUP_GRACE"]))
    return monitor


def failover(procs: dict, svc_ports: dict[str, int], gw_port: int, path: str, token: str,
             args) -> dict[str, tuple[Tally, Tally]]:
    seconds = 8.0 if args.quick else args.failover_seconds
    results = {}
    for name in FAULTS:
        stop(procs["v1"])  # a fresh v1 for every fault: crash and hang leave it unusable
        procs["v1"] = start_service("v1", svc_ports["v1"], token)
        monitor = start_real_monitor(svc_ports, token) if args.monitor else None
        port = monitor.gateway_port if monitor else gw_port
        try:
            asyncio.run(wait_served_by(port, path, "v1"))
            print(f"  {name}: {seconds:g} s of load, fault injected on v1 after "
                  f"{min(2.0, seconds / 4):g} s", file=sys.stderr)
            results[name] = asyncio.run(one_fault(name, svc_ports, port, path, token, seconds,
                                                  args.concurrency))
        finally:
            if monitor:
                monitor.stop()
                shutil.rmtree(monitor.data_dir, ignore_errors=True)
    print(f"\n## Failover under load: {seconds:g} s per fault, {args.concurrency} connections "
          "through the gateway, 4 straight to v1\n")
    print("| fault on v1 | gateway requests | gateway failed | gateway wrong body | served by "
          "| gateway p99 / max ms | direct requests | direct failed | direct wrong body |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, (gw, d) in results.items():
        served = " ".join(f"{v}:{n}" for v, n in sorted(gw.served.items()))
        print(f"| {name} | {gw.total} | {gw.failed} | {gw.wrong} | {served} | "
              f"{gw.pct(0.99):.0f} / {gw.pct(1.0):.0f} | {d.total} | {d.failed} | {d.wrong} |")
    print("\nfailed = transport error, timeout (15 s through the gateway, 2 s direct) or a "
          "non-200 answer; every client pauses 50 ms after a failure. wrong body = 200 whose "
          "book fails the canary digest: the gateway cannot see that, the router's canary probe "
          "removes v1. Router: " + (
              "the real monitor (python -m monitor run, a fresh one per fault, probing every "
              "0.5 s, fall 3)." if args.monitor else
              "the bench's stand-in (probes every 0.25 s), not the monitor's engine; "
              "--monitor uses the real monitor."))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per overhead target")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--failover-seconds", type=float, default=30.0, help="per fault")
    parser.add_argument("--quick", action="store_true", help="8 s per fault")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--monitor", action="store_true",
                        help="fail over with the real monitor instead of the bench's router")
    parser.add_argument("--serve-gateway", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--backends", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.serve_gateway:
        serve_gateway(args.serve_gateway, args.backends)
        return 0

    from services.bookservice.canary import CANARY_QUERY

    path = "/books?q=" + CANARY_QUERY.replace(" ", "+") + "&limit=1"
    token = secrets.token_urlsafe(24)
    svc_ports = {v: free_port() for v in VERSIONS}
    gw_port, nginx_port = free_port(), free_port()
    procs: dict[str, subprocess.Popen | None] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    try:
        for v in VERSIONS:
            procs[v] = start_service(v, svc_ports[v], token)
        procs["gateway"] = start_gateway(
            gw_port, {v: f"http://127.0.0.1:{p}" for v, p in svc_ports.items()})
        procs["nginx"] = start_nginx(nginx_port, svc_ports["v1"], tmp)
        targets = {"direct (v1)": (svc_ports["v1"], None),
                   "gateway": (gw_port, procs["gateway"])}
        if procs["nginx"] is not None:
            targets["nginx"] = (nginx_port, procs["nginx"])
        print(f"# Gateway benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
              f"load average before: {os.getloadavg()[0]:.2f})")
        results = overhead(targets, procs["v1"], path, args)
        if procs["nginx"] is None:
            print("\nnginx not installed")
        added = results["gateway", 1].pct(0.5) - results["direct (v1)", 1].pct(0.5)
        ratio = results["gateway", args.concurrency].total / max(
            1, results["direct (v1)", args.concurrency].total)
        lines = [f"added p50 latency, 1 connection: {added:.2f} ms "
                 f"(target < {TARGET_ADDED_P50_MS:g} ms): "
                 f"{'PASS' if added < TARGET_ADDED_P50_MS else 'FAIL'}",
                 f"gateway throughput, {args.concurrency} connections: {ratio:.2f} x direct "
                 f"(target >= {TARGET_RPS_RATIO:g}): "
                 f"{'PASS' if ratio >= TARGET_RPS_RATIO else 'FAIL'}"]
        if not args.skip_failover:
            faults = failover(procs, svc_ports, gw_port, path, token, args)
            worst = max(gw.failed for gw, _ in faults.values())
            lines.append(f"failed GETs through the gateway, worst fault: {worst} (target 0): "
                         f"{'PASS' if worst == 0 else 'FAIL'}")
            lines.append("wrong bodies through the gateway under silent corrupt (until the "
                         f"router's canary probe): {faults['silent corrupt'][0].wrong} "
                         "(no target: detection is the router's job)")
        print(f"\n## Targets (2-core machine; load average now {os.getloadavg()[0]:.2f}: "
              "other processes share the CPUs)\n")
        print("\n".join(f"- {line}" for line in lines))
    finally:
        for proc in procs.values():
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
