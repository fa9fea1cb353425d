"""The whole system with a real SMTP server: one email per incident transition, no storm."""

import time
from contextlib import contextmanager

import httpx

from tests.e2e.conftest import TOKEN
from tests.e2e.monitor_proc import all_versions_up, free_ports, start_monitor
from tests.notices.test_smtp import Inbox, smtp_server


def crash(url: str) -> None:
    try:
        httpx.post(f"{url}/chaos/crash", timeout=2.0, headers={"Authorization": f"Bearer {TOKEN}"})
    except httpx.HTTPError:
        pass


def smtp_env(port: int) -> dict:
    return {"MONITOR_SMTP_HOST": "127.0.0.1", "MONITOR_SMTP_PORT": str(port),
            "MONITOR_SMTP_MODE": "plain", "MONITOR_SMTP_FROM": "monitor@example.test",
            "MONITOR_SMTP_TO": "oncall@example.test", "MONITOR_NOTIFY_GROUP_WINDOW": "2",
            "MONITOR_CHAOS_TOKEN": TOKEN}


def wait_for_mail(inbox: Inbox, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(inbox.messages) < count:
        time.sleep(0.1)


@contextmanager
def monitored_with_mail(tmp_path, services):
    """A real SMTP server and the monitor mailing it, with every version up; yields both."""
    inbox = Inbox()
    with smtp_server(inbox) as port:
        monitor = start_monitor(tmp_path, services=services, **smtp_env(port))
        try:
            monitor.wait_for(all_versions_up, timeout=20)
            yield monitor, inbox
        finally:
            monitor.stop()


def test_it_emails_one_failover_notice_with_versions_and_evidence(tmp_path, services):
    with monitored_with_mail(tmp_path, services) as (monitor, inbox):
        crash(services["v1"])
        monitor.wait_for(lambda s: s["active"] == "v2", timeout=10)
        wait_for_mail(inbox, 1, timeout=15)
        time.sleep(3)  # a second, duplicate email would arrive within the group window
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert "v1 -> v2" in mail["Subject"]
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert "v1" in body and "v2" in body and "refused" in body


def test_it_sends_one_email_when_all_versions_fail_together(tmp_path, services):
    with monitored_with_mail(tmp_path, services) as (monitor, inbox):
        for url in services.values():
            crash(url)
        monitor.wait_for(lambda s: s["incident"] is not None, timeout=15)
        wait_for_mail(inbox, 1, timeout=15)
        time.sleep(4)
    assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
    assert "all versions down" in inbox.messages[0]["Subject"].lower()


def test_it_sends_a_test_email_from_the_command_line(tmp_path):
    import subprocess
    import sys

    from tests.e2e.monitor_proc import ROOT, monitor_env

    inbox = Inbox()
    with smtp_server(inbox) as port:
        env = monitor_env(tmp_path, *free_ports(2), **smtp_env(port))
        result = subprocess.run([sys.executable, "-m", "monitor", "notify", "test"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "250" in result.stdout
    assert len(inbox.messages) == 1 and inbox.messages[0]["To"] == "oncall@example.test"
