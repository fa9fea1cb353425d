"""Real processes on 127.0.0.1 for the end-to-end tests and the benchmarks: free ports, book
services, the monitor itself, bounded waits, and reads of its audit table.

Every wait is bounded in count and time; a process that fails to become ready is killed and
its output is put in the error. Everything started here is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.05
ADMIN_PASSWORD = "e2e-Admin-passphrase-9431"
FAST = {
    "MONITOR_INTERVAL": "0.5", "MONITOR_FAST_INTERVAL": "0.25", "MONITOR_DOWN_INTERVAL": "1",
    "MONITOR_TIMEOUT": "0.4", "MONITOR_STARTUP_GRACE": "1", "MONITOR_COOLDOWN": "2",
}
T = TypeVar("T")


# Ports and waiting -------------------------------------------------------------------------
def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (held open together, so none
    repeats; the OS picks them)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def wait_until(check: Callable[[], T], timeout: float, every: float = 0.1,
               what: str = "condition") -> T:
    """Call `check` until it returns something truthy (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / every) + 2):
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(every)
    raise AssertionError(f"{what} not met within {timeout}s")


def audit_table(data_dir: Path, columns: str = "seq, action, target",
                action: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of a monitor's SQLite audit table, in order (optionally of one action)."""
    where, args = ("WHERE action=?", (action,)) if action else ("", ())
    with sqlite3.connect(data_dir / "monitor.db") as db:
        return db.execute(f"SELECT {columns} FROM audit {where} ORDER BY seq",  # noqa: S608
                          args).fetchall()


# Any process ------------------------------------------------------------------------------
def process_output(proc: subprocess.Popen[bytes]) -> str:
    """Everything the process wrote to stdout and stderr so far."""
    log = getattr(proc, "log_file", None)
    if log is None or log.closed:
        return ""
    log.flush()
    log.seek(0)
    return str(log.read().decode(errors="replace"))


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """Terminate (then kill) the process if still running; return its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    log = getattr(proc, "log_file", None)
    if log is not None:
        log.close()
    return proc.returncode


def wait_until_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 15.0) -> None:
    """Poll ``url`` until it answers 200; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        for _ in range(int(timeout / POLL_S) + 1):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{proc.args} exited with {proc.returncode}:\n{process_output(proc)}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{process_output(proc)}")


# Book services ----------------------------------------------------------------------------
def start_service(version: str, port: int, token: str, *, timeout: float = 15.0,
                  extra_env: dict[str, str] | None = None,
                  catalog: Path | None = None) -> subprocess.Popen[bytes]:
    """Run ``python -m services.<version> --port <port>`` with SERVICE_CHAOS_TOKEN=token (and
    the catalog file `catalog`, else the shipped one) and return once its /health answers 200.
    The caller stops it with ``stop_process``."""
    env = {**os.environ, "SERVICE_CHAOS_TOKEN": token, "PYTHONUNBUFFERED": "1",
           **(extra_env or {})}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{version}", "--port", str(port), "--host", "127.0.0.1",
         *(["--catalog", str(catalog)] if catalog else [])],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    proc.log_file = log  # type: ignore[attr-defined]
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}/health", timeout)
    except BaseException:
        stop_process(proc)
        raise
    return proc


@contextmanager
def running_services(token: str, *, catalog: Path | None = None,
                     versions: tuple[str, ...] = ("v1", "v2", "v3")) -> Iterator[dict[str, str]]:
    """Real services on free ports for the duration of the block: version -> base URL."""
    ports = dict(zip(versions, free_ports(len(versions)), strict=True))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for version, port in ports.items():
            procs.append(start_service(version, port, token, catalog=catalog))
        yield {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    finally:
        for proc in procs:
            stop_process(proc)


def inject_fault(url: str, token: str, fault: str,
                 body: dict[str, Any] | None = None) -> float:
    """POST a chaos fault to a service; returns when it was sent (`time.time()`). A crash may
    close the connection before answering; any other failure raises."""
    at = time.time()
    try:
        httpx.post(f"{url}/chaos/{fault}", json=body or {}, timeout=5.0,
                   headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    except httpx.TransportError:
        if fault != "crash":
            raise
    return at


# The monitor ------------------------------------------------------------------------------
@dataclass
class MonitorProcess:
    proc: subprocess.Popen[str]
    data_dir: Path
    port: int
    gateway_port: int
    env: dict[str, str]
    cwd: Path = ROOT
    output: list[str] = field(default_factory=list)
    password: str = ADMIN_PASSWORD

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def client(self, user: str = "admin", password: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(user, password or self.password),
                            timeout=5.0)

    def status(self) -> dict[str, Any]:
        with self.client() as client:
            body: dict[str, Any] = client.get("/api/status").json()
            return body

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float,
                 every: float = 0.05) -> dict[str, Any]:
        """Poll /api/status until predicate(status) holds; returns that status."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.status()
                if predicate(last):
                    return last
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(every)
        raise AssertionError(f"condition not met within {timeout}s; last status: {last}")

    def cli(self, *args: str, stdin: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=self.cwd,
                              env={**self.env, **(extra_env or {})}, input=stdin,
                              capture_output=True, text=True, timeout=60)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0, *,
             keep_children: bool = False) -> int:
        """Stop the monitor. The children it spawned outlive a SIGKILL (to be adopted by the
        next monitor on this data dir); unless ``keep_children``, they are stopped here."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=5)
        if not keep_children:
            stop_children(self.data_dir)
        return code

    @property
    def text(self) -> str:
        return "".join(self.output)

    def drain(self) -> None:
        """Read the child's output in the background so its pipe never fills up."""
        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
        threading.Thread(target=pump, daemon=True).start()


def stop_children(data_dir: Path) -> None:
    """Kill the process groups recorded in ``<data_dir>/run/*.pid`` (children a killed
    monitor left running) and remove their pid files."""
    for path in (data_dir / "run").rglob("*.pid"):  # replicas: run/replicas/
        try:
            pid = int(json.loads(path.read_text())["pid"])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass
        path.unlink(missing_ok=True)


def monitor_env(data_dir: Path, port: int, gateway_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "SERVICE_"))}
    env.update(FAST)
    env.update({
        "MONITOR_DATA_DIR": str(data_dir), "MONITOR_PORT": str(port),
        "MONITOR_GATEWAY_PORT": str(gateway_port), "MONITOR_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def start_monitor(data_dir: Path, *, services: dict[str, str] | None = None,
                  ready_timeout: float = 90.0, cwd: Path = ROOT,
                  **extra: str) -> MonitorProcess:
    """Run the monitor; with `services` it watches those, otherwise it spawns v1..v3.
    With `cwd` it runs there (reading that directory's `.env`), the package found by path."""
    port, gateway_port, *service_ports = free_ports(5)
    if services:
        extra["MONITOR_SERVICES"] = ",".join(f"{k}={v}" for k, v in services.items())
    else:
        extra.setdefault("MONITOR_SERVICE_PORTS", ",".join(map(str, service_ports)))
    if cwd != ROOT:
        extra.setdefault("PYTHONPATH", str(ROOT))
    env = monitor_env(data_dir, port, gateway_port, **extra)
    port, gateway_port = int(env["MONITOR_PORT"]), int(env["MONITOR_GATEWAY_PORT"])
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "run"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    monitor = MonitorProcess(proc, data_dir, port, gateway_port, env, cwd)
    monitor.drain()
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            time.sleep(0.2)  # let the pump thread collect the last lines
            raise AssertionError(f"monitor exited with {proc.returncode}: {monitor.text}")
        try:
            if httpx.get(f"{monitor.url}/readyz", timeout=1.0).status_code == 200:
                return monitor
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    monitor.stop(signal.SIGKILL)
    raise AssertionError(f"monitor not ready within {ready_timeout}s: {monitor.text}")


def all_versions_up(status: dict[str, Any]) -> bool:
    return all(v["state"] == "up" for v in status["versions"])


def banner_password(text: str) -> str | None:
    match = re.search(r"^initial admin password: (\S+)$", text, re.MULTILINE)
    return match.group(1) if match else None
