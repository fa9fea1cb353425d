"""Preflight: the machine can honour the settings, or each problem is one line naming it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import trustme

from bench.processes import free_ports
from monitor.config import Settings
from monitor.ops.preflight import check, port_problem, smtp_problem, tls_problems

EXTERNAL = "v1=http://127.0.0.1:9/,v2=http://127.0.0.1:9/"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port taken the way a running server takes it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def settings(tmp_path, **overrides) -> Settings:
    dashboard, gateway, *services = free_ports(5)
    values = {"data_dir": tmp_path / "data", "port": dashboard, "gateway_port": gateway,
              "service_ports": ",".join(map(str, services))}
    return Settings(_env_file=None, **{**values, **overrides})


def test_it_finds_nothing_wrong_on_a_free_machine(tmp_path):
    assert check(settings(tmp_path), for_run=True) == []
    assert check(settings(tmp_path), for_run=False) == []


def test_it_reports_a_taken_port_naming_the_setting(listener):
    port = listener.getsockname()[1]
    assert port_problem("127.0.0.1", port, "MONITOR_PORT") == (
        f"MONITOR_PORT: 127.0.0.1:{port} is already in use")
    assert port_problem("127.0.0.1", free_ports(1)[0], "MONITOR_PORT") is None


@pytest.mark.parametrize(
    ("setting", "override"),
    [
        ("MONITOR_PORT", lambda port: {"port": port}),
        ("MONITOR_GATEWAY_PORT", lambda port: {"gateway_port": port}),
        ("MONITOR_SERVICE_PORTS (v2)",
         lambda port: {"service_ports": f"{free_ports(1)[0]},{port},{free_ports(1)[0]}"}),
    ],
)
def test_it_checks_every_port_the_monitor_will_bind(tmp_path, listener, setting, override):
    port = listener.getsockname()[1]
    problems = check(settings(tmp_path, **override(port)), for_run=True)
    assert problems == [f"{setting}: 127.0.0.1:{port} is already in use"]


def test_it_skips_service_ports_when_monitoring_external_services(tmp_path, listener):
    port = listener.getsockname()[1]
    s = settings(tmp_path, services=EXTERNAL, service_ports=f"{port},{port + 1},{port + 2}")
    assert check(s, for_run=True) == []


def test_it_reports_a_data_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    problems = check(settings(tmp_path, data_dir=blocker / "data"), for_run=True)
    assert problems == [
        f"MONITOR_DATA_DIR: {blocker / 'data'} cannot be created ({blocker} is not a directory)"]


def test_it_reports_a_data_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert check(settings(tmp_path, data_dir=blocker), for_run=True) == [
        f"MONITOR_DATA_DIR: {blocker} is not a directory"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_it_reports_an_unwritable_data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o500)
    try:
        problems = check(settings(tmp_path, data_dir=data), for_run=True)
    finally:
        data.chmod(0o700)
    assert len(problems) == 1
    assert problems[0].startswith(f"MONITOR_DATA_DIR: {data} is not writable")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_it_reports_a_data_dir_where_no_file_can_be_written_even_by_root(tmp_path):
    problems = check(settings(tmp_path, data_dir="/proc/self"), for_run=True)
    assert len(problems) == 1
    assert problems[0].startswith("MONITOR_DATA_DIR: /proc/self is not writable (")


def test_it_reports_missing_and_mismatched_tls_files(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    other = ca.issue_cert("other.example")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    other.private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))

    good = settings(tmp_path, tls_certfile=tmp_path / "cert.pem", tls_keyfile=tmp_path / "key.pem")
    missing = settings(tmp_path, tls_certfile=tmp_path / "nope.pem",
                       tls_keyfile=tmp_path / "key.pem")
    mismatched = settings(tmp_path, tls_certfile=tmp_path / "cert.pem",
                          tls_keyfile=tmp_path / "other-key.pem")

    assert tls_problems(good) == []
    assert tls_problems(missing) == [
        f"MONITOR_TLS_CERTFILE: {tmp_path / 'nope.pem'} does not exist"]
    (problem,) = tls_problems(mismatched)
    assert problem.startswith("MONITOR_TLS_CERTFILE/MONITOR_TLS_KEYFILE: cannot load")


def test_it_reports_a_smtp_cafile_without_certificates(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    problems = tls_problems(settings(tmp_path, smtp_cafile=tmp_path / "ca.pem"))
    assert len(problems) == 1
    assert problems[0].startswith(f"MONITOR_SMTP_CAFILE: {tmp_path / 'ca.pem'} holds no usable")


def smtp_settings(tmp_path, port: int) -> Settings:
    return settings(tmp_path, smtp_host="127.0.0.1", smtp_port=port, smtp_mode="plain",
                    smtp_from="monitor@example.org", smtp_to="oncall@example.org")


def test_it_checks_smtp_only_for_check_config(tmp_path):
    closed = free_ports(1)[0]
    s = smtp_settings(tmp_path, closed)
    problems = check(s, for_run=False)
    assert len(problems) == 1
    assert problems[0].startswith(f"MONITOR_SMTP_HOST: cannot connect to 127.0.0.1:{closed} (")
    assert check(s, for_run=True) == []


def test_it_accepts_a_listening_smtp_server(tmp_path, listener):
    assert smtp_problem(smtp_settings(tmp_path, listener.getsockname()[1])) is None
    assert smtp_problem(settings(tmp_path)) is None  # not configured: nothing to check


def test_it_reports_an_unreachable_postgresql_without_its_password(tmp_path):
    (tmp_path / "data").mkdir(mode=0o700)
    url = "postgresql+psycopg://monitor:hunter2-secret@127.0.0.1:9/monitor"
    problems = check(settings(tmp_path, services=EXTERNAL, database_url=url), for_run=False)
    [problem] = [p for p in problems if "MONITOR_DATABASE_URL" in p]
    assert "cannot connect to PostgreSQL" in problem and "hunter2" not in problem


def test_it_finds_a_reachable_postgresql_fine(tmp_path, pg_cluster):
    (tmp_path / "data").mkdir(mode=0o700)
    problems = check(settings(tmp_path, services=EXTERNAL, database_url=pg_cluster.url()),
                     for_run=False)
    assert [p for p in problems if "MONITOR_DATABASE_URL" in p] == []
