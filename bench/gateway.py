"""Gateway benchmark: the data plane against direct access, HAProxy and nginx, in one run.

    python bench/gateway.py [--seconds 4] [--concurrency 16] [--phase-seconds 12] [--quick]
                            [--faults] [--workers 2]

Everything runs on loopback in separate processes: three book services, the real gateway
process (`python -m monitor gateway`, following a signed route file as it does under the
monitor), HAProxy with deploy/haproxy.cfg (only ports and socket changed) and nginx when
installed. The overhead rows use `wrk` (C, from Debian) when it is installed, else a minimal
keep-alive HTTP/1.1 client on raw asyncio streams; either way the same for every target, and
the table shows the load generator's own CPU per request, so it is visible when the client,
not the server, limits a row (`--loadgen python` forces the Python client).

Then, with the real monitor (`python -m monitor run`) and its spawned gateway under GET load:
a monitor kill -9 and restart (children adopted), a SIGTERM and restart of a monitor whose
gateway runs on its own (MONITOR_SPAWN_GATEWAY=0), and the hang fault on the active version
(gateway p99). ``--faults`` adds every fault kind (crash, hang, errors, silent corrupt).
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


def start_gateway(port: int, urls: dict[str, str], data_dir: Path, workers: int = 1, *,
                  replicas: dict[str, tuple[str, ...]] | None = None,
                  **settings: str) -> subprocess.Popen:
    """The real gateway process following a route file (v1 first, then the other versions
    in ``urls``) signed like the monitor's; ``settings`` are extra MONITOR_* variables."""
    sys.path.insert(0, str(ROOT))
    from monitor.config import Settings
    from monitor.gateway.feed import route_file, write_atomically
    from monitor.gateway.route import PURPOSE, Route, encode
    from monitor.storage.keys import load_keys

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")},
           "MONITOR_DATA_DIR": str(data_dir), "MONITOR_GATEWAY_PORT": str(port),
           "MONITOR_GATEWAY_WORKERS": str(workers), "PYTHONPATH": str(ROOT), **settings}
    data_dir.mkdir(parents=True, exist_ok=True)
    key = load_keys(Settings(data_dir=data_dir)).derive(PURPOSE)
    route = Route(epoch=0, active="v1", fallbacks=tuple(v for v in urls if v != "v1"),
                  urls=urls, issued=time.time(), replicas=replicas or {})
    write_atomically(route_file(data_dir), encode(route, key))
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "gateway"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/books?q=a", proc=proc)
    return proc


def start_haproxy(port: int, svc_ports: dict[str, int], tmp: Path) -> subprocess.Popen | None:
    """HAProxy with deploy/haproxy.cfg, servers as the monitor leaves them (all ready)."""
    haproxy = shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy")
    if haproxy is None:
        return None
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    text = text.replace("/run/haproxy/failover-monitor.sock", str(tmp / "haproxy.sock"))
    text = text.replace("bind 127.0.0.1:8081", f"bind 127.0.0.1:{port}")
    for version, default in (("v1", 8001), ("v2", 8002), ("v3", 8003)):
        text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{svc_ports[version]}")
    (tmp / "haproxy.cfg").write_text(text)
    proc = subprocess.Popen([haproxy, "-f", str(tmp / "haproxy.cfg"), "-db"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/books?q=a", proc=proc)
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


@dataclass
class Sample:
    """One overhead measurement: requests, failures, latency percentiles (ms) and the load
    generator's CPU seconds. Slices merge with request-weighted percentiles."""

    requests: int = 0
    failed: int = 0
    p50: float = 0.0
    p99: float = 0.0
    loadgen_cpu: float = 0.0

    def merge(self, other: Sample) -> Sample:
        total = max(1, self.requests + other.requests)
        return Sample(self.requests + other.requests, self.failed + other.failed,
                      (self.p50 * self.requests + other.p50 * other.requests) / total,
                      (self.p99 * self.requests + other.p99 * other.requests) / total,
                      self.loadgen_cpu + other.loadgen_cpu)

    @property
    def total(self) -> int:
        return self.requests


def python_sample(port: int, path: str, conns: int, seconds: float) -> Sample:
    before = time.process_time()
    tally = asyncio.run(load(port, path, workers=conns, seconds=seconds, timeout=10))
    return Sample(tally.total, tally.failed, tally.pct(0.5), tally.pct(0.99),
                  time.process_time() - before)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * _UNITS[unit]
    return float(text) * 1e3


def wrk_sample(wrk: str, port: int, path: str, conns: int, seconds: float) -> Sample:
    """One wrk run (one thread: the other core is left to the servers)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([wrk, "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s",
                          "--latency", "--timeout", "10s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sample = Sample(loadgen_cpu=after.ru_utime + after.ru_stime - before.ru_utime
                    - before.ru_stime)
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "50%":
            sample.p50 = _ms(words[1])
        elif len(words) >= 2 and words[0] == "99%":
            sample.p99 = _ms(words[1])
        elif "requests in" in line:
            sample.requests = int(words[0])
        elif line.strip().startswith("Non-2xx"):
            sample.failed += int(words[-1])
        elif line.strip().startswith("Socket errors"):
            sample.failed += sum(int(w.strip(",")) for w in words[3::2])
    return sample


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
             args) -> tuple[dict[tuple[str, int], Sample],
                            dict[tuple[str, int], tuple[float, float]]]:
    """The same GET workload against each target, unloaded (1 connection: the latency a proxy
    adds) and saturated (``--concurrency`` connections: throughput; there p50 also holds the
    queueing of a slower server, by Little's law p50 ~ connections / throughput)."""
    wrk = shutil.which("wrk") if args.loadgen != "python" else None
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install wrk)")
    seconds = args.seconds / ROUNDS

    def measure(port: int, conns: int, secs: float) -> Sample:
        return wrk_sample(wrk, port, path, conns, secs) if wrk else \
            python_sample(port, path, conns, secs)

    results: dict[tuple[str, int], Sample] = {}
    spent: dict[tuple[str, int], list[float]] = {}
    for conc in (1, args.concurrency):
        for port, _ in targets.values():  # warm up connections and caches
            measure(port, conc, 1.0 if wrk else 0.3)
        for _ in range(ROUNDS):  # interleaved, so a noisy neighbour hits every target alike
            for name, (port, proxy) in targets.items():
                before = cpu_seconds(proxy), cpu_seconds(backend)
                sample = measure(port, conc, seconds)
                after = cpu_seconds(proxy), cpu_seconds(backend)
                results[name, conc] = results[name, conc].merge(sample) \
                    if (name, conc) in results else sample
                total = spent.setdefault((name, conc), [0.0, 0.0])
                total[0] += after[0] - before[0]
                total[1] += after[1] - before[1]
    cpu = {key: (s[0] / max(1, results[key].total) * 1e6, s[1] / max(1, results[key].total) * 1e6)
           for key, s in spent.items()}
    elapsed = (max(1, round(seconds)) if wrk else seconds) * ROUNDS
    print(f"\n## Overhead: GET {path}, keep-alive connections, {elapsed:g} s per target "
          f"in {ROUNDS} interleaved slices, load generator: "
          f"{'wrk -t1 (C)' if wrk else 'Python asyncio client'}\n")
    print("| target | connections | requests/s | p50 ms | p99 ms | rps vs direct "
          "| added p50 ms | proxy CPU us/req | v1 CPU us/req | load generator CPU us/req "
          "| failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, conc), t in results.items():
        direct = results["direct (v1)", conc]
        proxy_cpu, backend_cpu = cpu[name, conc]
        print(f"| {name} | {conc} | {t.total / elapsed:.0f} | {t.p50:.2f} "
              f"| {t.p99:.2f} | {t.total / max(1, direct.total):.2f} "
              f"| {t.p50 - direct.p50:+.2f} "
              f"| {'-' if targets[name][1] is None else f'{proxy_cpu:.0f}'} "
              f"| {backend_cpu:.0f} | {t.loadgen_cpu / max(1, t.total) * 1e6:.0f} "
              f"| {t.failed} |")
    print("\np50/p99 of several slices are their request-weighted means; CPU is user + system "
          "time of the process (and its workers) over the same slices.")
    return results, cpu


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


def start_real_monitor(svc_ports: dict[str, int], token: str, data_dir: Path | None = None,
                       **extra: str):
    """`python -m monitor run` watching the bench's services (a fresh data dir by default)."""
    from bench.processes import all_versions_up, start_monitor

    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="bench-gateway-monitor-"))
    monitor = start_monitor(data_dir, MONITOR_CHAOS_TOKEN=token, services={
        v: f"http://127.0.0.1:{p}" for v, p in svc_ports.items()}, **extra)
    monitor.wait_for(all_versions_up, timeout=20)
    return monitor


def failover(procs: dict, svc_ports: dict[str, int], path: str, token: str, args,
             faults: list[str]) -> dict[str, tuple[Tally, Tally]]:
    """Each fault on v1 under load through the real monitor's gateway."""
    from tests.e2e.monitor_proc import FAST

    seconds = args.phase_seconds
    results = {}
    for name in faults:
        stop(procs["v1"])  # a fresh v1 for every fault: crash and hang leave it unusable
        procs["v1"] = start_service("v1", svc_ports["v1"], token)
        monitor = start_real_monitor(svc_ports, token)
        time.sleep(float(FAST["MONITOR_STARTUP_GRACE"]))
        try:
            asyncio.run(wait_served_by(monitor.gateway_port, path, "v1"))
            print(f"  {name}: {seconds:g} s of load, fault injected on v1 after "
                  f"{min(2.0, seconds / 4):g} s", file=sys.stderr)
            results[name] = asyncio.run(one_fault(name, svc_ports, monitor.gateway_port, path,
                                                  token, seconds, args.concurrency))
        finally:
            monitor.stop()
            shutil.rmtree(monitor.data_dir, ignore_errors=True)
    print(f"\n## Faults under load: {seconds:g} s per fault, {args.concurrency} connections "
          "through the real monitor's gateway, 4 straight to v1\n")
    print("| fault on v1 | gateway requests | gateway failed | gateway wrong body | served by "
          "| gateway p50 / p99 / max ms | direct requests | direct failed | direct wrong body |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, (gw, d) in results.items():
        served = " ".join(f"{v}:{n}" for v, n in sorted(gw.served.items()))
        print(f"| {name} | {gw.total} | {gw.failed} | {gw.wrong} | {served} | "
              f"{gw.pct(0.5):.0f} / {gw.pct(0.99):.0f} / {gw.pct(1.0):.0f} | {d.total} "
              f"| {d.failed} | {d.wrong} |")
    print("\nfailed = transport error, timeout (15 s through the gateway, 2 s direct) or a "
          "non-200 answer; every client pauses 50 ms after a failure. wrong body = 200 whose "
          "book fails the canary digest (until the monitor's canary probe moves the route). "
          "Monitor probing every 0.5 s, fall 3, a fresh one per fault.")
    return results


def one_restart(svc_ports: dict[str, int], path: str, token: str, seconds: float, *,
                own: bool) -> Tally:
    """GET load through the gateway; at 1/3 the monitor goes down (SIGTERM with its gateway
    on its own, or kill -9 with a spawned gateway), 1/6 later it starts again."""
    from tests.e2e.monitor_proc import ROOT as REPO

    extra = {"MONITOR_SPAWN_GATEWAY": "0"} if own else {}
    data_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-restart-"))
    monitor = start_real_monitor(svc_ports, token, data_dir, **extra)
    gateway = subprocess.Popen([sys.executable, "-m", "monitor", "gateway"], cwd=REPO,
                               env=monitor.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) if own else None
    if gateway is not None:
        wait_http(f"{monitor.gateway}/books?q=a", proc=gateway)
    held = {k: monitor.env[k] for k in ("MONITOR_PORT", "MONITOR_GATEWAY_PORT")}
    restarted = []

    async def cycle() -> None:
        await asyncio.sleep(seconds / 3)
        if own:
            await asyncio.to_thread(monitor.stop)
        else:
            await asyncio.to_thread(monitor.stop, signal.SIGKILL, keep_children=True)
        await asyncio.sleep(seconds / 6)
        restarted.append(await asyncio.to_thread(
            start_real_monitor, svc_ports, token, data_dir, **extra, **held))

    async def run() -> Tally:
        tally, _ = await asyncio.gather(load(monitor.gateway_port, path, workers=4,
                                             seconds=seconds, timeout=15), cycle())
        return tally

    try:
        return asyncio.run(run())
    finally:
        for started in restarted:
            started.stop()
        monitor.stop()
        stop(gateway)
        shutil.rmtree(data_dir, ignore_errors=True)


def restarts(svc_ports: dict[str, int], path: str, token: str, args) -> dict[str, Tally]:
    results = {
        "kill -9 (spawned gateway, adopted)": one_restart(svc_ports, path, token,
                                                          args.phase_seconds, own=False),
        "SIGTERM (gateway on its own)": one_restart(svc_ports, path, token,
                                                    args.phase_seconds, own=True),
    }
    print(f"\n## Monitor restart under load: {args.phase_seconds:g} s of GETs on 4 connections "
          "through the gateway; the monitor goes down at 1/3 and is started again 1/6 later\n")
    print("| monitor | requests | failed | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for name, t in results.items():
        print(f"| {name} | {t.total} | {t.failed} | {t.pct(0.99):.1f} | {t.pct(1.0):.1f} |")
    return results


def phases(procs: dict, svc_ports: dict[str, int], path: str, token: str, args) -> list[str]:
    """Monitor restarts and faults under load (Python load generator: it counts every failure
    and checks every body); the lines against the targets."""
    lines = []
    restart = restarts(svc_ports, path, token, args)
    lines.append("failed GETs across monitor restarts: "
                 + ", ".join(f"{n}: {t.failed}" for n, t in restart.items()) + " (target 0)")
    faults = failover(procs, svc_ports, path, token, args,
                      list(FAULTS) if args.faults else ["hang"])
    gw, _ = faults["hang"]
    lines.append(f"gateway p99 under the hang fault: {gw.pct(0.99):.0f} ms, failed {gw.failed}"
                 " (target <= 300 ms, 0 failed)")
    if args.faults:
        worst = max(t.failed for t, _ in faults.values())
        lines.append(f"failed GETs through the gateway, worst fault: {worst} (target 0)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per overhead target")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--phase-seconds", type=float, default=12.0,
                        help="per restart and fault phase")
    parser.add_argument("--quick", action="store_true", help="short phases (6 s)")
    parser.add_argument("--faults", action="store_true", help="every fault kind, not only hang")
    parser.add_argument("--workers", type=int, default=2,
                        help="also measure the gateway with this many workers (1 = skip)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="overhead load generator: wrk when installed (auto), or Python")
    parser.add_argument("--no-hedge-row", action="store_true",
                        help="also measure the gateway with MONITOR_GATEWAY_HEDGE=0")
    parser.add_argument("--skip-phases", action="store_true",
                        help="only the overhead table (no monitor restart or fault phases)")
    args = parser.parse_args()
    if args.quick:
        args.phase_seconds = 6.0
    sys.path.insert(0, str(ROOT))

    from services.bookservice.canary import CANARY_QUERY

    path = "/books?q=" + CANARY_QUERY.replace(" ", "+") + "&limit=1"
    token = secrets.token_urlsafe(24)
    svc_ports = {v: free_port() for v in VERSIONS}
    urls = {v: f"http://127.0.0.1:{p}" for v, p in svc_ports.items()}
    procs: dict[str, subprocess.Popen | None] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    try:
        for v in VERSIONS:
            procs[v] = start_service(v, svc_ports[v], token)
        targets: dict[str, tuple[int, subprocess.Popen | None]] = {
            "direct (v1)": (svc_ports["v1"], None)}
        port = free_port()
        procs["gateway"] = start_gateway(port, urls, tmp / "gw1")
        targets["embedded gateway"] = (port, procs["gateway"])
        if args.workers > 1:
            port = free_port()
            procs["gateway-n"] = start_gateway(port, urls, tmp / "gwn", workers=args.workers)
            targets[f"embedded gateway, {args.workers} workers"] = (port, procs["gateway-n"])
        if args.no_hedge_row:
            port = free_port()
            procs["gateway-nh"] = start_gateway(port, urls, tmp / "gwnh",
                                                MONITOR_GATEWAY_HEDGE="0")
            targets["embedded gateway, hedging off"] = (port, procs["gateway-nh"])
        port = free_port()
        procs["haproxy"] = start_haproxy(port, svc_ports, tmp)
        if procs["haproxy"] is not None:
            targets["HAProxy"] = (port, procs["haproxy"])
        port = free_port()
        procs["nginx"] = start_nginx(port, svc_ports["v1"], tmp)
        if procs["nginx"] is not None:
            targets["nginx"] = (port, procs["nginx"])
        print(f"# Gateway benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
              f"load average before: {os.getloadavg()[0]:.2f})")
        results, cpu = overhead(targets, procs["v1"], path, args)
        for name in ("haproxy", "nginx"):
            if procs[name] is None:
                print(f"\n{name}: not installed")
        for name in ("gateway", "gateway-n", "gateway-nh"):
            stop(procs.pop(name, None))
        direct1, directn = results["direct (v1)", 1], results["direct (v1)", args.concurrency]
        gw1, gwn = results["embedded gateway", 1], results["embedded gateway", args.concurrency]
        added = gw1.p50 - direct1.p50
        ratio = gwn.total / max(1, directn.total)
        lines = [f"embedded gateway, added p50 at 1 connection: {added:.2f} ms (target <= 1 ms)",
                 f"embedded gateway, throughput at {args.concurrency} connections: {ratio:.2f} x "
                 "direct (target >= 0.7x)"]
        if args.workers > 1:
            key = f"embedded gateway, {args.workers} workers"
            share = results[key, args.concurrency].total / max(1, directn.total)
            lines.append(f"{key}: {share:.2f} x direct")
        if "nginx" in targets:
            mine, theirs = cpu["embedded gateway", args.concurrency][0], \
                cpu["nginx", args.concurrency][0]
            lines.append(f"embedded gateway CPU per request: {mine:.0f} us = "
                         f"{mine / max(1e-9, theirs):.1f} x nginx's {theirs:.0f} us "
                         "(target <= 4x)")
        if "HAProxy" in targets:
            lines.append("HAProxy throughput: "
                         f"{results['HAProxy', args.concurrency].total / max(1, directn.total):.2f}"
                         " x direct (target >= 0.9x)")
        if not args.skip_phases:
            lines += phases(procs, svc_ports, path, token, args)
        print(f"\n## Against the targets (load average now {os.getloadavg()[0]:.2f}: other "
              "processes share the CPUs)\n")
        print("\n".join(f"- {line}" for line in lines))
    finally:
        for proc in procs.values():
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
