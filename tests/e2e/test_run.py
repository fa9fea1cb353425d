"""`python -m monitor run` as an operator meets it: banner, login, chaos, supervision, SIGTERM."""

import base64
import re
import signal
import socket
import sqlite3
import subprocess
import sys

import psutil
import pytest

from tests.e2e.monitor_proc import (
    ROOT,
    all_versions_up,
    banner_password,
    free_ports,
    monitor_env,
    start_monitor,
    wait_until,
)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the overview page carries no csrf_token"
    return match.group(1)


def audit_rows(data_dir, action: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "monitor.db") as db:
        return db.execute("SELECT seq, target, reason FROM audit WHERE action=?",
                          (action,)).fetchall()


def test_it_runs_supervises_fails_over_and_stops_cleanly(tmp_path):
    # restart later than the monitor detects the crash, so the failover is certain
    monitor = start_monitor(tmp_path, MONITOR_ADMIN_PASSWORD="", MONITOR_RESTART_DELAY="3")
    try:
        password = wait_until(lambda: banner_password(monitor.text), 10)
        monitor.password = password
        monitor.wait_for(all_versions_up, timeout=20)
        children = psutil.Process(monitor.proc.pid).children(recursive=True)
        assert len(children) >= 3

        logged_from = len(monitor.output)
        with monitor.client("admin", "not-the-password-1") as wrong:
            assert wrong.get("/api/status").status_code == 401
        with monitor.client() as client:
            page = client.get("/")
            assert page.status_code == 200
            answer = client.post("/actions/chaos/v1/crash",
                                 data={"csrf_token": csrf_token(page.text)},
                                 headers={"Origin": monitor.url, "Sec-Fetch-Site": "same-origin"})
            assert answer.status_code in (200, 303)
        logins = "".join(monitor.output[logged_from:])
        for secret in (password, base64.b64encode(f"admin:{password}".encode()).decode(),
                       "not-the-password-1"):
            assert secret not in logins

        monitor.wait_for(lambda s: s["active"] == "v2", timeout=15)
        restarts = wait_until(lambda: audit_rows(tmp_path, "supervisor.restart"), 15)
        assert restarts[0][1] == "v1"
        status = monitor.wait_for(lambda s: s["versions"][0]["state"] == "up", timeout=20)
        assert status["versions"][0]["process"]["restarts"] >= 1
        assert status["versions"][0]["process"]["running"]
        assert audit_rows(tmp_path, "chaos.crash")[0][1] == "v1"

        with monitor.client() as client:
            metrics = client.get("/metrics").text
        for family in ('monitor_failovers_total{reason="automatic"} 1.0',
                       'monitor_active_version{version="v2"} 1.0',
                       'monitor_supervisor_restarts_total{version="v1"}',
                       'monitor_probes_total{outcome="refused",version="v1"}',
                       'monitor_probe_latency_seconds_bucket{le=',
                       "monitor_open_incidents", 'monitor_notices{status="pending"}'):
            assert family in metrics, family

        backup = monitor.cli("backup", str(tmp_path / "backup.db"))
        assert backup.returncode == 0, backup.stderr
        assert "checkpoints written" in backup.stdout
        with sqlite3.connect(tmp_path / "backup.db") as copy:
            assert copy.execute("SELECT count(*) FROM audit").fetchone()[0] > 3

        pids = [c.pid for c in psutil.Process(monitor.proc.pid).children(recursive=True)]
        monitor.proc.send_signal(signal.SIGTERM)
        assert monitor.proc.wait(timeout=15) == 0
        wait_until(lambda: not any(_alive(pid) for pid in pids), 10)
        assert audit_rows(tmp_path, "monitor.stop")
        verify = monitor.cli("audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert re.search(r"^(\d+)/\1 records valid$", verify.stdout, re.MULTILINE)
    finally:
        monitor.stop(signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_briefly(tmp_path, **extra) -> subprocess.CompletedProcess:
    port, gateway, *services = free_ports(5)
    env = monitor_env(tmp_path, port, gateway,
                      MONITOR_SERVICE_PORTS=",".join(map(str, services)), **extra)
    return subprocess.run([sys.executable, "-m", "monitor", "run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_it_refuses_a_taken_port_with_one_line_naming_the_setting(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        result = run_briefly(tmp_path, MONITOR_PORT=str(taken.getsockname()[1]))
    finally:
        taken.close()
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "MONITOR_PORT" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("setting, value, named", [
    ("MONITOR_TIMEOUT", "5", "MONITOR_TIMEOUT"),
    ("MONITOR_FALL", "zero", "MONITOR_FALL"),
    ("MONITOR_SMTP_MODE", "telnet", "MONITOR_SMTP_MODE"),
    ("MONITOR_SECRET_KEY", "short", "MONITOR_SECRET_KEY"),
])
def test_it_refuses_a_bad_setting_with_one_line_naming_it(tmp_path, setting, value, named):
    result = run_briefly(tmp_path, **{setting: value})
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and named in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_it_gives_the_services_no_monitor_settings_and_stops_every_child_on_sigterm(tmp_path):
    """Children outlive a killed monitor (to be adopted: tests/e2e/test_gateway_process.py);
    a clean stop stops them all."""
    monitor = start_monitor(tmp_path)
    try:
        monitor.wait_for(all_versions_up, timeout=20)
        children = psutil.Process(monitor.proc.pid).children()
        pids = [c.pid for c in psutil.Process(monitor.proc.pid).children(recursive=True)]
        services = [c for c in children if "services." in " ".join(c.cmdline())]
        assert len(services) == 3 and len(pids) >= 4  # v1..v3 and the gateway
        assert all(not any(k.startswith("MONITOR_") for k in c.environ()) for c in services)
    finally:
        assert monitor.stop() == 0
    wait_until(lambda: not any(_alive(pid) for pid in pids), 10)


def cli(tmp_path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    port, gateway, *services = free_ports(5)
    env = monitor_env(tmp_path, port, gateway,
                      MONITOR_SERVICE_PORTS=",".join(map(str, services)), **extra)
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_it_checks_the_configuration_and_names_what_is_wrong(tmp_path):
    fine = cli(tmp_path, "check-config")
    assert fine.returncode == 0 and "configuration OK" in fine.stdout
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        busy = cli(tmp_path, "check-config", MONITOR_GATEWAY_PORT=str(taken.getsockname()[1]))
    finally:
        taken.close()
    assert busy.returncode == 1 and "MONITOR_GATEWAY_PORT" in busy.stderr


def test_it_manages_users_from_the_command_line(tmp_path):
    added = cli(tmp_path, "user", "add", "olga", "--role", "operator",
                MONITOR_NEW_PASSWORD="Olga-operator-pass-42")
    assert added.returncode == 0, added.stderr
    weak = cli(tmp_path, "user", "add", "ivan", "--role", "viewer",
               MONITOR_NEW_PASSWORD="password123")
    assert weak.returncode == 1 and "password" in weak.stderr
    assert cli(tmp_path, "user", "disable", "olga").returncode == 0
    listing = cli(tmp_path, "user", "list").stdout
    assert "olga\toperator\tdisabled" in listing and "ivan" not in listing
    verify = cli(tmp_path, "audit", "verify", "--json")
    assert verify.returncode == 0 and '"ok": true' in verify.stdout


@pytest.mark.parametrize("trusted, expected", [("", "127.0.0.1"), ("127.0.0.1", "203.0.113.9")])
def test_it_believes_x_forwarded_for_only_from_a_trusted_proxy(tmp_path, trusted, expected):
    monitor = start_monitor(tmp_path, services={"v1": "http://127.0.0.1:9", "v2":
                                                "http://127.0.0.1:9"},
                            MONITOR_TRUSTED_PROXIES=trusted)
    try:
        with monitor.client("admin", "not-the-password-1") as client:
            refused = client.get("/api/status", headers={"X-Forwarded-For": "203.0.113.9"})
        assert refused.status_code == 401
        with sqlite3.connect(tmp_path / "monitor.db") as db:
            rows = db.execute("SELECT source_ip FROM audit WHERE action='login.failed'").fetchall()
        assert rows == [(expected,)]
    finally:
        monitor.stop()


def test_it_exits_1_and_names_the_row_when_the_audit_log_was_edited(tmp_path):
    for name in ("olga", "ivan"):
        assert cli(tmp_path, "user", "add", name, "--role", "viewer",
                   MONITOR_NEW_PASSWORD="Viewer-pass-phrase-42").returncode == 0
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        db.execute("UPDATE audit SET target = 'mallory' WHERE seq = 1")
    verify = cli(tmp_path, "audit", "verify")
    assert verify.returncode == 1
    assert "seq 1: modified" in verify.stdout and "1/2 records valid" in verify.stdout
