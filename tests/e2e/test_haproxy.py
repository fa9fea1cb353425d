"""HAProxy (Debian's package) as the data plane, driven by the real monitor.

Skipped with a reason when haproxy is not installed, unless MONITOR_REQUIRE_HAPROXY=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.load import Load
from tests.e2e.monitor_proc import ROOT, all_versions_up, free_ports, start_monitor, wait_until
from tests.e2e.procs import start_service, stop_process

TOKEN = "e2e-haproxy-token-0123456789abcdef-xyz"
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                      if os.path.exists("/usr/sbin/haproxy") else None)

pytestmark = pytest.mark.skipif(
    HAPROXY is None and os.environ.get("MONITOR_REQUIRE_HAPROXY") != "1",
    reason="haproxy is not installed (apt-get install haproxy; MONITOR_REQUIRE_HAPROXY=1 "
           "makes this a failure)")


def haproxy_config(tmp_path: Path, port: int, ports: dict[str, int]) -> Path:
    """deploy/haproxy.cfg with only the ports and the socket path changed."""
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    text = text.replace("/run/haproxy/failover-monitor.sock", str(tmp_path / "haproxy.sock"))
    text = text.replace("bind 127.0.0.1:8081", f"bind 127.0.0.1:{port}")
    for version, default in (("v1", 8001), ("v2", 8002), ("v3", 8003)):
        text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[version]}")
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path


def runtime_api(path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2.0)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode()


def admin_states(path: Path) -> dict[str, str]:
    lines = runtime_api(path, "show servers state books").splitlines()
    rows = [line.split() for line in lines if line and line[0].isdigit() and " books " in line]
    return {row[3]: ("maint" if int(row[6]) & 1 else "ready") for row in rows}


def audit_rows(data_dir: Path, action: str) -> list[tuple[str, str]]:
    with sqlite3.connect(data_dir / "monitor.db") as db:
        return db.execute("SELECT target, params FROM audit WHERE action = ? ORDER BY seq",
                          (action,)).fetchall()


@pytest.fixture
def stack(tmp_path):
    ports = dict(zip(("v1", "v2", "v3"), free_ports(3), strict=True))
    procs = {v: start_service(v, p, TOKEN) for v, p in ports.items()}
    front = free_ports(1)[0]
    config = haproxy_config(tmp_path, front, ports)
    haproxy = subprocess.Popen([HAPROXY or "haproxy", "-f", str(config), "-db"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monitor = None
    try:
        wait_until(lambda: (tmp_path / "haproxy.sock").exists(), timeout=10)
        data = tmp_path / "data"
        monitor = start_monitor(
            data, services={v: f"http://127.0.0.1:{p}" for v, p in ports.items()},
            MONITOR_CHAOS_TOKEN=TOKEN, MONITOR_DATAPLANE="haproxy",
            MONITOR_HAPROXY_SOCKET=str(tmp_path / "haproxy.sock"),
            MONITOR_HAPROXY_BACKEND="books")
        monitor.wait_for(all_versions_up, timeout=20)
        yield {"monitor": monitor, "url": f"http://127.0.0.1:{front}", "procs": procs,
               "ports": ports, "socket": tmp_path / "haproxy.sock", "data": data}
    finally:
        if monitor:
            monitor.stop()
        haproxy.terminate()
        haproxy.wait(timeout=10)
        for proc in procs.values():
            stop_process(proc)


def test_it_loses_no_get_through_haproxy_when_the_active_version_crashes(stack):
    url, ports = stack["url"], stack["ports"]
    wait_until(lambda: admin_states(stack["socket"]) == {"v1": "ready", "v2": "ready",
                                                        "v3": "ready"}, 10)
    with Load(url, header="x-service-version") as load:
        load.wait_for_answers(100, after=0, timeout=20)
        httpx.post(f"http://127.0.0.1:{ports['v1']}/chaos/crash", json={}, timeout=2.0,
                   headers={"Authorization": f"Bearer {TOKEN}"})
        crashed = time.monotonic()
        stack["monitor"].wait_for(lambda s: s["active"] == "v2", timeout=15)
        wait_until(lambda: admin_states(stack["socket"])["v1"] == "maint", timeout=10)
        load.wait_for_answers(100, after=time.monotonic(), timeout=20)
    assert load.errors == []
    versions = [by for _, _, by in load.answers]
    assert versions[0] == "v1" and versions[-1] == "v2"
    assert load.count_after(crashed) > 0
    answer = httpx.get(f"{url}/books", params={"q": "whale"})
    assert answer.headers["x-service-version"] == "v2"


def test_it_restores_a_server_state_changed_by_hand_and_audits_it(stack):
    sock = stack["socket"]
    wait_until(lambda: admin_states(sock)["v2"] == "ready", timeout=30)
    assert runtime_api(sock, "set server books/v2 state maint").strip() == ""
    assert admin_states(sock)["v2"] == "maint"
    wait_until(lambda: admin_states(sock)["v2"] == "ready", timeout=30)
    rows = wait_until(lambda: audit_rows(stack["data"], "haproxy.drift"), timeout=30)
    assert rows[0][0] == "books" and "v2" in rows[0][1]


def test_it_shows_an_unreachable_haproxy_in_readyz_and_emails_once(stack, tmp_path):
    monitor = stack["monitor"]
    (tmp_path / "haproxy.sock").rename(tmp_path / "moved.sock")
    ready = wait_until(lambda: (r := httpx.get(f"{monitor.url}/readyz")).status_code == 503
                       and r.json(), 15)
    assert ready["dataplane"] == {"kind": "haproxy", "reachable": False}
    time.sleep(3.5)  # another reconcile period: still one row, one notice
    rows = audit_rows(stack["data"], "haproxy.unreachable")
    with sqlite3.connect(stack["data"] / "monitor.db") as db:
        notices = db.execute("SELECT kind FROM notice WHERE kind = 'dataplane'").fetchall()
    assert len(rows) == 1 and len(notices) == 1
    (tmp_path / "moved.sock").rename(tmp_path / "haproxy.sock")
    wait_until(lambda: httpx.get(f"{monitor.url}/readyz").status_code == 200, timeout=15)
    assert len(audit_rows(stack["data"], "haproxy.reachable")) == 1
