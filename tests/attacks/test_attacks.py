"""The outside review's attacks, against a real `python -m monitor run` on loopback.

Each attack starts from a running monitor with its spawned services; nothing is mocked. The
attacker and the real operator use different loopback source addresses (127.0.0.2 vs
127.0.0.1), as two machines would.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e.monitor_proc import (
    ADMIN_PASSWORD,
    ROOT,
    all_versions_up,
    free_ports,
    monitor_env,
    start_monitor,
)

pytestmark = pytest.mark.e2e
HEADER_TIMEOUT = 3.0


def from_address(monitor, address: str, **kwargs) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=monitor.url, transport=transport, timeout=10.0, **kwargs)


def audit_actions(monitor, prefix: str) -> list[dict]:
    with monitor.client() as client:
        rows = client.get("/api/audit", params={"action": prefix, "limit": 500}).json()["rows"]
    return rows


@pytest.fixture(scope="module")
def monitor(tmp_path_factory):
    process = start_monitor(tmp_path_factory.mktemp("attacks"),
                            MONITOR_DASHBOARD_HEADER_TIMEOUT=str(HEADER_TIMEOUT))
    try:
        yield process
    finally:
        process.stop()


def test_a_guesser_elsewhere_cannot_lock_the_admin_out(monitor):
    with from_address(monitor, "127.0.0.2") as attacker:
        statuses = [attacker.get("/api/status", auth=("admin", f"Guess-{n}-password")).status_code
                    for n in range(7)]
        assert statuses[-1] == 429 and statuses[:4] == [401] * 4
        assert attacker.get("/api/status", auth=("admin", ADMIN_PASSWORD)).status_code == 429
    with from_address(monitor, "127.0.0.1", auth=("admin", ADMIN_PASSWORD)) as admin:
        assert admin.get("/api/status").status_code == 200
    [lock] = [r for r in audit_actions(monitor, "login.lockout") if "127.0.0.2" in r["reason"]]
    assert "account 'admin' from 127.0.0.2" in lock["reason"]


def test_a_malformed_header_flood_is_throttled_and_barely_touches_the_audit_log(monitor):
    before = len(audit_actions(monitor, "login"))
    with from_address(monitor, "127.0.0.3") as flooder:
        statuses = [flooder.get("/api/status", headers={"Authorization": "Basic !!!!"})
                    .status_code for _ in range(60)]
    assert statuses.count(429) >= 40 and set(statuses) <= {401, 429}
    added = len(audit_actions(monitor, "login")) - before
    assert added <= 3  # first failure, the lockout (the aggregate comes when the window ends)


@pytest.mark.parametrize("field, value", [
    ("csrf_token", "1" * 10 + "." + "\u00e9" * 64),
    ("csrf_token", "\u2603"),
])
def test_a_non_ascii_csrf_token_is_refused_and_audited_not_a_500(monitor, field, value):
    with monitor.client() as admin:
        before = len(audit_actions(monitor, "csrf.rejected"))
        response = admin.post("/actions/pause", data={field: value},
                              headers={"Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 403
        assert admin.get("/api/status").json()["paused"] is False
        assert len(audit_actions(monitor, "csrf.rejected")) == before + 1
        flash = admin.get("/", params={"msg": "x", "ok": "1", "sig": "\u00e9" * 32})
        assert flash.status_code == 200


def test_a_rebinding_host_name_is_refused(monitor):
    with monitor.client() as admin:
        response = admin.get("/api/status", headers={"Host": "attacker.example"})
    assert response.status_code == 400


def test_a_second_monitor_on_the_same_data_dir_exits_naming_the_first(monitor):
    port, gateway, *services = free_ports(5)
    env = monitor_env(monitor.data_dir, port, gateway,
                      MONITOR_SERVICE_PORTS=",".join(map(str, services)))
    second = subprocess.run([sys.executable, "-m", "monitor", "run"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"PID {monitor.proc.pid}" in lines[0]


def test_the_data_dir_is_private(monitor):
    for name in ("monitor.db", "secret.key", "audit.checkpoints"):
        mode = (monitor.data_dir / name).stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{name} is {mode:o}"


def test_a_cut_audit_tail_with_its_checkpoint_line_is_caught(tmp_path):
    monitor = start_monitor(tmp_path / "data")
    with monitor.client() as admin:  # a few security-relevant rows, each checkpointed
        page = admin.get("/").text
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        for _ in range(2):
            admin.post("/actions/pause", data={"csrf_token": token, "reason": "drill"},
                       headers={"Sec-Fetch-Site": "same-origin"})
            admin.post("/actions/resume", data={"csrf_token": token, "reason": "drill"},
                       headers={"Sec-Fetch-Site": "same-origin"})
    assert monitor.stop() == 0
    assert monitor.cli("audit", "verify").returncode == 0
    database = sqlite3.connect(monitor.data_dir / "monitor.db")
    with database:
        head = database.execute("SELECT max(seq) FROM audit").fetchone()[0]
        database.execute("DELETE FROM audit WHERE seq > ?", (head - 5,))
    database.close()
    checkpoints = monitor.data_dir / "audit.checkpoints"
    lines = checkpoints.read_text().splitlines()
    checkpoints.write_text("\n".join(lines[:-2]) + "\n")  # the lines that saw the cut rows
    verdict = monitor.cli("audit", "verify")
    assert verdict.returncode == 1, verdict.stdout
    assert "checkpoint" in verdict.stdout


def test_a_crash_is_failed_over_while_another_process_holds_the_write_lock(tmp_path):
    """Production busy timeout (5 s): the switch must not wait for the database."""
    monitor = start_monitor(tmp_path / "data", MONITOR_RESTART_DELAY="30")
    try:
        status = monitor.wait_for(all_versions_up, timeout=30)
        v1_pid = next(v["process"]["pid"] for v in status["versions"] if v["name"] == "v1")
        blocker = sqlite3.connect(monitor.data_dir / "monitor.db", timeout=1)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            os.kill(v1_pid, signal.SIGKILL)
            switched = monitor.wait_for(lambda s: s["active"] == "v2", timeout=20)
            took = time.monotonic() - started
            with httpx.Client(timeout=5) as client:
                ready = client.get(f"{monitor.url}/readyz").json()
        finally:
            blocker.rollback()
            blocker.close()
        assert switched["active"] == "v2"
        bound = 0.5 + 2 * 0.25 + 0.4 + 1.0  # interval + (fall-1)*fast + timeout + 1 s
        assert took < bound * 4, f"switch took {took:.1f} s"  # generous: shared CPUs
        assert ready["queued_writes"] >= 1 or ready["status"] != "ready"
        rows = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not rows:
            rows = audit_actions(monitor, "failover.automatic")
            time.sleep(0.2)
        assert rows, "the queued decision never reached the audit log"
    finally:
        monitor.stop()


def slow_connections(monitor, count: int, address: str) -> list[socket.socket]:
    """Slowloris: connections that start a request and never finish its headers, plus some
    that connect and send nothing (half-open)."""
    host, port = monitor.url.removeprefix("http://").split(":")
    opened = []
    for index in range(count):
        conn = socket.create_connection((host, int(port)), timeout=5,
                                        source_address=(address, 0))
        if index % 4:
            conn.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        opened.append(conn)
    return opened


def closed_by_peer(conns: list[socket.socket], *, within: float) -> int:
    """How many of `conns` the server closed (EOF or reset) before `within` seconds passed."""
    pending, closed = list(conns), 0
    deadline = time.monotonic() + within
    while pending and time.monotonic() < deadline:
        readable, _, _ = select.select(pending, [], [], 0.5)
        for conn in readable:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed += 1
                pending.remove(conn)
    return closed


def test_a_slow_request_flood_does_not_starve_a_real_operator(monitor):
    flood = slow_connections(monitor, 400, "127.0.0.9")
    try:
        with from_address(monitor, "127.0.0.1", auth=("admin", ADMIN_PASSWORD)) as admin:
            for round_ in range(3):  # the flood keeps dribbling header bytes meanwhile
                for conn in flood:
                    with contextlib.suppress(OSError):
                        conn.send(b"a")
                response = admin.get("/api/status")  # bound: the client's 10 s timeout
                assert response.status_code == 200, round_
        # every slow connection is dropped: over the per-IP cap at once, the rest at the
        # header deadline (bounded wait, generous for a loaded machine)
        assert closed_by_peer(flood, within=HEADER_TIMEOUT + 30) == len(flood)
    finally:
        for conn in flood:
            conn.close()


def test_connections_above_the_per_ip_cap_are_closed_and_others_still_served(monitor):
    flood = slow_connections(monitor, 80, "127.0.0.10")  # cap: 64 per IP (the default)
    try:
        refused = closed_by_peer(flood[64:], within=HEADER_TIMEOUT / 2)
        assert refused == len(flood[64:])
        with from_address(monitor, "127.0.0.11") as other:  # another address is not capped
            assert other.get("/healthz").status_code == 200
    finally:
        for conn in flood:
            conn.close()
