"""The outbox and its delivery job, with a fake clock and a hand-written fake SMTP transport."""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading

import pytest
from sqlmodel import select

from monitor.config import Settings
from monitor.notices.delivery import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    NOT_CONFIGURED,
    Notifier,
    NotifyError,
    backoff,
    counts,
    enqueue,
    recent,
)
from monitor.notices.render import Item, render
from monitor.storage.store import Incident, Notice, NoticeAttempt, Store

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def at(self, offset: float) -> Clock:
        self.now = T0 + offset
        return self


class FakeServer:
    """Transport fake: keeps what it was given; raises `error` instead while one is set."""

    def __init__(self) -> None:
        self.sent = []
        self.error: BaseException | None = None

    def send(self, message) -> str:
        if self.error is not None:
            raise self.error
        self.sent.append(message)
        return "250 OK"


class LongestWait(random.Random):
    """Jitter that always picks the top of the range, so back-off times are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Killed(BaseException):
    """The process dies: nothing after this line runs, nothing is caught."""


class DiesAfterSending(FakeServer):
    def send(self, message) -> str:
        super().send(message)
        raise Killed


def make_settings(tmp_path, **overrides) -> Settings:
    values = {"data_dir": tmp_path, "smtp_host": "127.0.0.1", "smtp_port": 2525,
              "smtp_mode": "plain", "smtp_from": "monitor@example.test",
              "smtp_to": "oncall@example.test", "notify_group_window": 5.0,
              "public_url": "https://monitor.example.test", **overrides}
    return Settings(**values)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


def add(store: Store, at: float, kind: str = "failover", subject: str = "Failover v1 -> v2",
        **payload) -> Notice:
    with store.write() as session:
        return enqueue(session, kind=kind, subject=subject, now=T0 + at,
                       payload=payload or {"from": "v1", "to": "v2"})


def notices(store: Store) -> list[Notice]:
    with store.read() as session:
        return list(session.exec(select(Notice).order_by(Notice.id)))


def attempts(store: Store) -> list[NoticeAttempt]:
    with store.read() as session:
        return list(session.exec(select(NoticeAttempt).order_by(NoticeAttempt.id)))


# Outbox -------------------------------------------------------------------------------------
def test_it_writes_pending_notices_with_unique_stable_message_ids(store):
    first, second = add(store, 0), add(store, 0, kind="all_down", subject="All down")
    assert [n.status for n in notices(store)] == ["pending", "pending"]
    assert all(re.fullmatch(r"<notice-[0-9a-f]{32}@[A-Za-z0-9.-]+>", n.message_id)
               for n in (first, second))
    assert first.message_id != second.message_id
    assert [n.message_id for n in notices(store)] == [first.message_id, second.message_id]
    assert json.loads(notices(store)[0].payload) == {"from": "v1", "to": "v2"}


def test_it_writes_the_notice_only_if_the_event_commits(store):
    with pytest.raises(RuntimeError), store.write() as session:
        enqueue(session, kind="failover", subject="Failover", payload={}, now=T0)
        raise RuntimeError("the failover itself failed to commit")
    assert notices(store) == []


def test_it_refuses_an_unknown_kind(store):
    with pytest.raises(ValueError, match="unknown notice kind"), store.write() as session:
        enqueue(session, kind="whatever", subject="x", payload={}, now=T0)


# Grouping -----------------------------------------------------------------------------------
@pytest.mark.parametrize("created, runs, emails", [
    # three versions failing together: one email, sent once the group window has passed
    ([0, 0, 0], [1, 4.9, 5], [3]),
    ([0, 2, 4], [5, 20], [3]),
    # separate incidents: separate emails
    ([0, 10], [5, 15], [1, 1]),
    # notices arriving while the first email waits join it
    ([0, 10, 11], [16, 30], [3]),
    ([0, 3, 9], [5, 9, 14], [2, 1]),
])
async def test_it_groups_notices_within_the_window_into_one_email(store, settings, created, runs,
                                                                  emails):
    for at in created:
        add(store, at)
    server, clock = FakeServer(), Clock()
    notifier = Notifier(settings, store, transport=server, clock=clock)
    for at in runs:
        clock.at(at)
        await notifier.deliver_due()
    rows = notices(store)
    batch_of = {n.message_id: n.batch_id for n in rows}
    sizes = [sum(1 for n in rows if n.batch_id == batch_of[m["Message-ID"]]) for m in server.sent]
    assert sizes == emails
    assert all(n.status == "sent" for n in rows)


async def test_it_uses_the_first_notice_of_a_batch_for_message_id_and_subject(store, settings):
    first = add(store, 0, subject="Failover v1 -> v2")
    add(store, 1, kind="all_down", subject="All versions down")
    server = FakeServer()
    delivered = await Notifier(settings, store, transport=server, clock=Clock().at(6)).deliver_due()
    [message] = server.sent
    assert delivered == 2
    assert message["Message-ID"] == first.message_id
    assert message["Subject"] == "[Failover Monitor] Failover v1 -> v2 (+1 more)"
    assert "All versions down" in message.get_body(("plain",)).get_content()


# Retry, back-off, give-up -------------------------------------------------------------------
@pytest.mark.parametrize("attempt, ceiling", [
    (1, BACKOFF_BASE_S), (2, 2 * BACKOFF_BASE_S), (4, 8 * BACKOFF_BASE_S),
    (10, BACKOFF_CAP_S), (1000, BACKOFF_CAP_S),
])
def test_it_backs_off_exponentially_with_full_jitter(attempt, ceiling):
    rng = random.Random(7)
    delays = [backoff(attempt, rng) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling / 2 and min(delays) < ceiling / 2


async def test_it_retries_after_back_off_and_records_every_attempt(store, settings):
    notice = add(store, 0)
    server, clock = FakeServer(), Clock().at(5)
    notifier = Notifier(settings, store, transport=server, clock=clock, rng=LongestWait())
    server.error = NotifyError("cannot send via 127.0.0.1:2525: refused", permanent=False)
    assert await notifier.deliver_due() == 0
    [row] = notices(store)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == T0 + 5 + BACKOFF_BASE_S
    assert row.last_error.startswith("cannot send via 127.0.0.1:2525: refused; next try at")

    clock.now = row.next_attempt_at - 0.001
    await notifier.deliver_due()
    assert len(attempts(store)) == 1  # not due yet: no attempt

    clock.now = row.next_attempt_at
    await notifier.deliver_due()
    [row] = notices(store)
    assert row.attempts == 2 and row.next_attempt_at == clock.now + 2 * BACKOFF_BASE_S

    server.error = None
    clock.now = row.next_attempt_at
    assert await notifier.deliver_due() == 1
    [row] = notices(store)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, "")
    assert [(a.ok, a.error[:15]) for a in attempts(store)] == [
        (False, "cannot send via"), (False, "cannot send via"), (True, "")]
    assert [m["Message-ID"] for m in server.sent] == [notice.message_id]


async def test_it_gives_up_after_the_configured_age_and_counts_it_failed(store, tmp_path):
    settings = make_settings(tmp_path, notify_give_up_after=60)
    add(store, 0)
    add(store, 4)  # same batch: gives up with the first
    server, clock = FakeServer(), Clock()
    server.error = NotifyError("cannot send: timed out", permanent=False)
    notifier = Notifier(settings, store, transport=server, clock=clock, rng=random.Random(1))
    for at in (5, 30, 59):
        clock.at(at)
        await notifier.deliver_due()
    tried = len(attempts(store))
    assert counts(store)["pending"] == 2

    clock.at(60)
    await notifier.deliver_due()
    assert [n.status for n in notices(store)] == ["failed", "failed"]
    assert all(n.last_error.startswith("gave up after 60s: cannot send: timed out")
               for n in notices(store))
    assert len(attempts(store)) == tried  # giving up is not another attempt
    assert counts(store) == {"pending": 0, "sending": 0, "sent": 0, "failed": 2, "unsent": 0}


async def test_it_fails_a_message_the_server_refuses_without_retrying(store, settings):
    add(store, 0)
    server = FakeServer()
    server.error = NotifyError("refused the message: 554 spam", permanent=True)
    notifier = Notifier(settings, store, transport=server, clock=Clock().at(10))
    await notifier.deliver_due()
    notifier.clock.at(10_000)
    await notifier.deliver_due()
    [row] = notices(store)
    assert (row.status, row.attempts, row.last_error) == (
        "failed", 1, "refused the message: 554 spam")


@pytest.mark.parametrize("subject, header", [
    ("Failover v1 -> v2: typed\r\nBcc: victim@example.test",
     "[Failover Monitor] Failover v1 -> v2: typed Bcc: victim@example.test"),
    ("line\nbreak\tand\x00control", "[Failover Monitor] line break and control"),
    ("x" * 500, "[Failover Monitor] " + "x" * 199 + "\u2026"),
])
async def test_it_folds_a_subject_into_one_line_so_it_cannot_add_headers(store, settings,
                                                                        subject, header):
    add(store, 0, subject=subject)
    server = FakeServer()
    await Notifier(settings, store, transport=server, clock=Clock().at(5)).deliver_due()
    [message] = server.sent
    assert message["Subject"] == header
    assert message["Bcc"] is None and message["To"] == "oncall@example.test"
    assert notices(store)[0].status == "sent"


# Crash safety -------------------------------------------------------------------------------
async def test_it_resends_a_batch_left_sending_with_the_same_message_id(store, settings):
    first = add(store, 0)
    add(store, 1)
    dying = DiesAfterSending()
    with pytest.raises(Killed):
        await Notifier(settings, store, transport=dying, clock=Clock().at(6)).deliver_due()
    assert [n.status for n in notices(store)] == ["sending", "sending"]
    add(store, 7)  # arrives after the crash: must not change the email being retried

    server, clock = FakeServer(), Clock().at(7)
    restarted = Notifier(settings, store, transport=server, clock=clock)
    assert await restarted.deliver_due() == 0  # lease of the dead process still running
    clock.at(6 + restarted.lease)
    await restarted.deliver_due()
    again = server.sent[0]
    assert again["Message-ID"] == dying.sent[0]["Message-ID"] == first.message_id
    assert again.get_body(("plain",)).get_content() == \
        dying.sent[0].get_body(("plain",)).get_content()
    assert [n.status for n in notices(store)] == ["sent", "sent", "sent"]
    assert len(server.sent) == 2  # the late notice went in its own email


async def test_it_never_runs_two_deliveries_at_once(store, settings):
    add(store, 0)
    release, entered = threading.Event(), threading.Event()

    class SlowServer(FakeServer):
        def send(self, message):
            entered.set()
            release.wait(5)
            return super().send(message)

    server = SlowServer()
    notifier = Notifier(settings, store, transport=server, clock=Clock().at(5))
    first = asyncio.create_task(notifier.deliver_due())
    assert await asyncio.to_thread(entered.wait, 5)
    assert await notifier.deliver_due() == 0
    release.set()
    assert await asyncio.wait_for(first, 5) == 1
    assert len(server.sent) == 1


# Without SMTP -------------------------------------------------------------------------------
async def test_it_keeps_notices_unsent_without_smtp_and_sends_them_once_configured(store,
                                                                                   tmp_path):
    add(store, 0)
    unconfigured = Settings(data_dir=tmp_path, notify_group_window=5.0)
    assert await Notifier(unconfigured, store, clock=Clock().at(10)).deliver_due() == 0
    [row] = notices(store)
    assert (row.status, row.last_error, row.attempts) == ("unsent", NOT_CONFIGURED, 0)
    assert counts(store)["unsent"] == 1

    server = FakeServer()
    configured = Notifier(make_settings(tmp_path), store, transport=server, clock=Clock().at(20))
    assert await configured.deliver_due() == 1
    assert notices(store)[0].status == "sent" and len(server.sent) == 1


# Reminders ----------------------------------------------------------------------------------
def open_incident(store: Store, *, opened: float = 0, closed: float | None = None) -> int:
    with store.write() as session:
        incident = Incident(kind="all_down", opened_at=T0 + opened, summary="All versions down",
                            closed_at=None if closed is None else T0 + closed)
        session.add(incident)
        session.flush()
        return incident.id


@pytest.mark.parametrize("every, closed, calls, reminded_at", [
    (100, None, [50, 100, 150, 200, 350], [100, 200, 350]),
    (100, 120, [100, 150, 300], [100]),          # no reminder once closed
    (0, None, [100, 1000], []),                  # 0 = reminders off
])
async def test_it_reminds_while_an_incident_stays_open(store, tmp_path, every, closed, calls,
                                                       reminded_at):
    incident_id = open_incident(store)
    clock = Clock()
    notifier = Notifier(make_settings(tmp_path, notify_remind_every=every), store,
                        transport=FakeServer(), clock=clock)
    for at in calls:
        if closed is not None and at >= closed:
            with store.write() as session:
                session.get(Incident, incident_id).closed_at = T0 + closed
        clock.at(at)
        await notifier.remind()
    rows = notices(store)
    assert [n.created_at - T0 for n in rows] == reminded_at
    assert all(n.kind == "reminder" and n.incident_id == incident_id for n in rows)
    assert all(n.subject.startswith("Still open: All versions down (for") for n in rows)


async def test_it_queues_no_reminders_without_smtp(store, tmp_path):
    open_incident(store)
    settings = Settings(data_dir=tmp_path, notify_remind_every=10)
    assert await Notifier(settings, store, clock=Clock().at(100)).remind() == 0
    assert notices(store) == []


# Reading ------------------------------------------------------------------------------------
def test_it_counts_and_lists_notices_by_status(store):
    for at in (0, 1, 2):
        add(store, at)
    with store.write() as session:
        session.get(Notice, 1).status = "sent"
        session.get(Notice, 2).status = "failed"
    assert counts(store) == {"pending": 1, "sending": 0, "sent": 1, "failed": 1, "unsent": 0}
    assert [n.id for n in recent(store, limit=2)] == [3, 2]


# Rendering ----------------------------------------------------------------------------------
def test_it_renders_versions_evidence_utc_time_and_dashboard_link():
    evidence = [
        {"version": "v1", "ok": False, "failure": "http_5xx", "detail": "HTTP 503",
         "latency_ms": None, "at": T0 - 2},
        {"version": "v2", "ok": True, "failure": None, "latency_ms": 3.14, "at": T0 - 1},
    ]
    item = Item(kind="failover", subject="Failover v1 -> v2", created_at=T0, incident_id=7,
                payload={"source": "v1", "target": "v2", "epoch": 4, "at": "2023-11-14T22:13:20Z",
                         "reason": "<script>x</script> 3 failed probes", "evidence": evidence})
    out = render([item], dashboard_url="https://mon.example.test")
    assert out.subject == "[Failover Monitor] Failover v1 -> v2"
    for expected in ("Versions: v1 -> v2", "When:     2023-11-14 22:13:20 UTC", "Incident: #7",
                     "2023-11-14 22:13:18 UTC  v1  FAIL  -  http_5xx HTTP 503",
                     "2023-11-14 22:13:19 UTC  v2  ok  3.1 ms", "epoch: 4",
                     "Dashboard: https://mon.example.test"):
        assert expected in out.text
    assert "&lt;script&gt;x&lt;/script&gt;" in out.html and "<script>" not in out.html
    assert '<a href="https://mon.example.test">' in out.html
    assert "v1 &rarr; v2" in out.html
    assert "2023-11-14T22:13:20Z" not in out.text  # the notice's own time is shown instead


@pytest.mark.parametrize("payload", [{}, {"evidence": "garbage"}, {"evidence": [1, None]},
                                     {"evidence": [{"at": "yesterday"}]}])
def test_it_renders_whatever_the_payload_lacks(payload):
    out = render([Item(kind="lockout", subject="Lockout", payload=payload, created_at=T0)],
                 dashboard_url="http://127.0.0.1:8000")
    assert out.text.startswith("Security lockout: Lockout\nWhen:     2023-11-14 22:13:20 UTC")
    assert "http://127.0.0.1:8000" in out.html
