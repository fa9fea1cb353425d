"""Start the real monitor (`python -m monitor run`) as a subprocess for end-to-end tests."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "e2e-Admin-passphrase-9431"
FAST = {
    "MONITOR_INTERVAL": "0.5", "MONITOR_FAST_INTERVAL": "0.25", "MONITOR_DOWN_INTERVAL": "1",
    "MONITOR_TIMEOUT": "0.4", "MONITOR_STARTUP_GRACE": "1", "MONITOR_COOLDOWN": "2",
}


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so none repeats)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


@dataclass
class MonitorProcess:
    proc: subprocess.Popen
    data_dir: Path
    port: int
    gateway_port: int
    env: dict
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

    def status(self) -> dict:
        with self.client() as client:
            return client.get("/api/status").json()

    def wait_for(self, predicate, *, timeout: float, every: float = 0.05) -> dict:
        """Poll /api/status until predicate(status) holds; returns that status."""
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            try:
                last = self.status()
                if predicate(last):
                    return last
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(every)
        raise AssertionError(f"condition not met within {timeout}s; last status: {last}")

    def cli(self, *args: str, stdin: str | None = None, extra_env: dict | None = None):
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
        def pump():
            for line in self.proc.stdout:
                self.output.append(line)
        threading.Thread(target=pump, daemon=True).start()


def stop_children(data_dir: Path) -> None:
    """Kill the process groups recorded in ``<data_dir>/run/*.pid`` (children a killed
    monitor left running) and remove their pid files."""
    for path in (data_dir / "run").glob("*.pid"):
        try:
            pid = int(json.loads(path.read_text())["pid"])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass
        path.unlink(missing_ok=True)


def monitor_env(data_dir: Path, port: int, gateway_port: int, **extra: str) -> dict:
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
                  ready_timeout: float = 30.0, cwd: Path = ROOT, **extra: str) -> MonitorProcess:
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
            time.sleep(0.2)
            raise AssertionError(f"monitor exited with {proc.returncode}: {monitor.text}")
        try:
            if httpx.get(f"{monitor.url}/readyz", timeout=1.0).status_code == 200:
                return monitor
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    monitor.stop(signal.SIGKILL)
    raise AssertionError(f"monitor not ready within {ready_timeout}s: {monitor.text}")


def wait_until(check, timeout: float, every: float = 0.02):
    """Poll ``check()`` until it returns something true (returned), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s")


def all_versions_up(status: dict) -> bool:
    return all(v["state"] == "up" for v in status["versions"])


def banner_password(text: str) -> str | None:
    match = re.search(r"^initial admin password: (\S+)$", text, re.MULTILINE)
    return match.group(1) if match else None
