"""Incident notices end to end: outbox -> delivery job -> real SMTP server (aiosmtpd) on loopback.

Time is a fake clock; the SMTP server and the database are real.
"""

from __future__ import annotations

import ssl

import pytest
import trustme
from sqlmodel import select

from monitor.notices.delivery import BACKOFF_CAP_S, Notifier, enqueue
from monitor.notices.smtp import SmtpTransport
from monitor.storage.store import Notice, NoticeAttempt, Store
from tests.notices.test_smtp import Inbox, free_port, make_settings, smtp_server

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
EVIDENCE = [
    {"version": "v1", "ok": False, "failure": "timeout after 1.0s", "latency_ms": None,
     "at": T0 - 3},
    {"version": "v1", "ok": False, "failure": "HTTP 500", "latency_ms": 12.5, "at": T0 - 1},
    {"version": "v2", "ok": True, "failure": None, "latency_ms": 4.2, "at": T0 - 1},
]


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self.now = T0 + offset

    def __call__(self) -> float:
        return self.now

    def at(self, offset: float) -> None:
        self.now = T0 + offset


class Killed(BaseException):
    """The monitor dies between the SMTP answer and marking the notice sent."""


class DiesAfterSending:
    def __init__(self, inner: SmtpTransport) -> None:
        self.inner = inner

    def send(self, message) -> str:
        self.inner.send(message)
        raise Killed


def add(store: Store, at: float, kind: str = "failover", subject: str = "Failover v1 -> v2",
        payload: dict | None = None) -> Notice:
    with store.write() as session:
        return enqueue(session, kind=kind, subject=subject, now=T0 + at,
                       payload=payload or {"from": "v1", "to": "v2", "evidence": EVIDENCE})


def notices(store: Store) -> list[Notice]:
    with store.read() as session:
        return list(session.exec(select(Notice).order_by(Notice.id)))


def attempts_of(store: Store, notice_id: int) -> list[bool]:
    with store.read() as session:
        query = select(NoticeAttempt).where(NoticeAttempt.notice_id == notice_id)
        return [a.ok for a in session.exec(query.order_by(NoticeAttempt.id))]


def body(message, subtype: str = "plain") -> str:
    return message.get_body((subtype,)).get_content().replace("\r\n", "\n")


async def drain(notifier: Notifier, runs: int = 5) -> int:
    """Run the delivery job until it has nothing left to send (bounded)."""
    total = 0
    for _ in range(runs):
        sent = await notifier.deliver_due()
        total += sent
        if not sent:
            break
    return total


async def test_it_emails_a_failover_once_with_subject_versions_and_evidence(store, tmp_path):
    inbox = Inbox()
    with smtp_server(inbox) as port:
        settings = make_settings(tmp_path, port, public_url="https://monitor.example.test")
        notice = add(store, 0, payload={"from": "v1", "to": "v2", "reason": "3 failed probes",
                                        "evidence": EVIDENCE})
        clock = Clock(5)
        notifier = Notifier(settings, store, clock=clock)
        assert await notifier.deliver_due() == 1
        clock.at(600)
        assert await notifier.deliver_due() == 0
    [message] = inbox.messages
    assert message["Subject"] == "[Failover Monitor] Failover v1 -> v2"
    assert message["Message-ID"] == notice.message_id
    assert (message["From"], message["To"]) == ("monitor@example.test", "oncall@example.test")
    text = body(message)
    for expected in ("Failover v1 -> v2\nWhen:     2023-11-14 22:13:20 UTC",
                     "Versions: v1 -> v2", "Reason:   3 failed probes",
                     "2023-11-14 22:13:17 UTC  v1  FAIL  -  timeout after 1.0s",
                     "2023-11-14 22:13:19 UTC  v1  FAIL  12.5 ms  HTTP 500",
                     "2023-11-14 22:13:19 UTC  v2  ok  4.2 ms",
                     "Dashboard: https://monitor.example.test"):
        assert expected in text
    html = body(message, "html")
    assert "<td>timeout after 1.0s</td>" in html
    assert '<a href="https://monitor.example.test">' in html
    assert [n.status for n in notices(store)] == ["sent"]


async def test_it_sends_one_email_when_three_versions_fail_together(store, tmp_path):
    inbox = Inbox()
    add(store, 0, subject="Failover v1 -> v2")
    add(store, 1, subject="Failover v2 -> v3", payload={"from": "v2", "to": "v3"})
    add(store, 2, kind="all_down", subject="All versions down", payload={"active": "v3"})
    with smtp_server(inbox) as port:
        notifier = Notifier(make_settings(tmp_path, port), store, clock=Clock(6))
        assert await drain(notifier) == 3
    [message] = inbox.messages
    assert message["Subject"] == "[Failover Monitor] Failover v1 -> v2 (+2 more)"
    text = body(message)
    assert text.startswith("3 notices from the Failover Monitor, grouped into one email.")
    for expected in ("Versions: v1 -> v2", "Versions: v2 -> v3", "All versions down\nWhen:"):
        assert expected in text


async def test_it_holds_notices_while_smtp_is_down_and_delivers_each_once(store, tmp_path):
    inbox, port = Inbox(), free_port()
    settings = make_settings(tmp_path, port)
    clock = Clock()
    notifier = Notifier(settings, store, clock=clock)
    first = add(store, 0)
    with smtp_server(inbox, port=port):
        clock.at(5)
        assert await notifier.deliver_due() == 1

    # server stopped: the port is closed
    later = [add(store, 100, subject="Failover v2 -> v3"), add(store, 200, kind="recovery",
                                                                subject="v1 recovered")]
    for at in (105, 205, 305, 405):
        clock.at(at)
        assert await notifier.deliver_due() == 0
    failed_tries = attempts_of(store, later[0].id)
    assert failed_tries and not any(failed_tries)
    waiting = [n for n in notices(store) if n.id != first.id]
    assert all(n.status == "pending" and n.next_attempt_at > T0 + 100 for n in waiting)
    assert "cannot send via 127.0.0.1" in waiting[0].last_error

    with smtp_server(inbox, port=port):  # back on the same port
        clock.at(405 + BACKOFF_CAP_S + 1)
        assert await drain(notifier) == 2
        assert await drain(notifier) == 0
    # one email per incident, in order, none twice
    assert inbox.message_ids == [first.message_id] + [n.message_id for n in later]
    assert all(n.status == "sent" for n in notices(store))
    for notice in later:
        mentions = [m for m in inbox.messages if notice.subject in body(m)]
        assert len(mentions) == 1
        assert attempts_of(store, notice.id)[-1] is True


async def test_it_retries_after_a_crash_with_the_same_message_id(store, tmp_path):
    inbox = Inbox()
    notice = add(store, 0)
    with smtp_server(inbox) as port:
        settings = make_settings(tmp_path, port)
        dying = Notifier(settings, store, transport=DiesAfterSending(SmtpTransport(settings)),
                         clock=Clock(5))
        with pytest.raises(Killed):
            await dying.deliver_due()
        assert [n.status for n in notices(store)] == ["sending"]

        # a fresh process on the same database
        restarted_store = Store(store.url)
        clock = Clock(6)
        restarted = Notifier(settings, restarted_store, clock=clock)
        clock.at(5 + restarted.lease)
        assert await restarted.deliver_due() == 1
        restarted_store.dispose()
    assert inbox.message_ids == [notice.message_id, notice.message_id]
    first, retry = (body(m) for m in inbox.messages)
    assert first == retry
    assert [n.status for n in notices(store)] == ["sent"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("trusted", [True, False])
async def test_it_delivers_over_starttls_only_to_a_trusted_certificate(store, tmp_path, ca,
                                                                       trusted):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    cafile = tmp_path / "ca.pem"
    (ca if trusted else trustme.CA()).cert_pem.write_to_path(str(cafile))
    inbox = Inbox()
    add(store, 0)
    with smtp_server(inbox, tls_context=context, require_starttls=True) as port:
        settings = make_settings(tmp_path, port, smtp_mode="starttls", smtp_cafile=cafile)
        assert await Notifier(settings, store, clock=Clock(5)).deliver_due() == int(trusted)
    [row] = notices(store)
    if trusted:
        assert inbox.tls == [True] and row.status == "sent"
    else:
        assert inbox.messages == [] and row.status == "pending"
        assert "TLS certificate not trusted" in row.last_error


async def test_it_never_lets_a_subject_inject_headers(store, tmp_path):
    inbox = Inbox()
    add(store, 0, subject="Failover v1 -> v2: typed\r\nBcc: victim@example.test")
    with smtp_server(inbox) as port:
        await Notifier(make_settings(tmp_path, port), store, clock=Clock(5)).deliver_due()
    [message] = inbox.messages
    assert message["Subject"] == (
        "[Failover Monitor] Failover v1 -> v2: typed Bcc: victim@example.test")
    assert message["Bcc"] is None
    assert [n.status for n in notices(store)] == ["sent"]
