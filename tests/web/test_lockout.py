"""Brute-force lockout, as a pure window and through the dashboard with a fake clock."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

import pytest
from argon2.exceptions import VerifyMismatchError
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import select

from monitor.storage.store import Notice
from monitor.storage.users import add_user
from monitor.web.app import create_app
from monitor.web.security.throttle import SCRAPE_ACCOUNT, Lockout, Scope
from tests.web.support import CHEAP_HASHER, audit_rows, auth, flush_failures


@pytest.mark.parametrize("failures, gap, locked", [
    (4, 1.0, False),     # below the limit
    (5, 1.0, True),      # the fifth failure in the window locks
    (5, 80.0, False),    # spread over more than the window: never 5 at once
])
def test_it_locks_an_account_from_one_address_after_too_many_failures(failures, gap, locked):
    lockout = Lockout(pair_limit=5, ip_limit=100, window=300, lock_for=60)
    now = 1000.0
    for _ in range(failures):
        lockout.failure("ann", "10.0.0.1", now=now)
        now += gap
    assert (lockout.retry_after("ann", "10.0.0.1", now=now) > 0) is locked
    assert lockout.retry_after("ann", "10.0.0.9", now=now) == 0  # the real ann elsewhere


def test_it_reports_each_lock_once_and_unlocks_after_lock_for():
    lockout = Lockout(pair_limit=2, ip_limit=100, window=60, lock_for=30)
    assert lockout.failure("ann", "ip", now=0) == []
    [lock] = lockout.failure("ann", "ip", now=1)
    assert (lock.scope, lock.account, lock.ip, lock.until) == (Scope.PAIR, "ann", "ip", 31)
    assert lockout.failure("ann", "ip", now=2) == []  # already locked: no second report
    assert lockout.retry_after("ann", "ip", now=2) == 29
    assert lockout.retry_after("ann", "ip", now=31) == 0


@pytest.mark.parametrize("round_, seconds", [(1, 30), (2, 60), (3, 120), (4, 240), (6, 600)])
def test_it_doubles_the_lock_on_every_repeat_up_to_a_cap(round_, seconds):
    lockout = Lockout(pair_limit=2, ip_limit=100, window=60, lock_for=30, max_lock=600)
    now, locks = 0.0, []
    for _ in range(round_):
        lockout.failure("ann", "ip", now=now)
        locks = lockout.failure("ann", "ip", now=now)
        now = locks[0].until
    assert locks[0].seconds == seconds


def test_it_forgets_old_strikes():
    lockout = Lockout(pair_limit=1, ip_limit=100, lock_for=30, strike_memory=3600)
    assert lockout.failure("ann", "ip", now=0)[0].seconds == 30
    assert lockout.failure("ann", "ip", now=100)[0].seconds == 60
    assert lockout.failure("ann", "ip", now=100 + 60 + 3601)[0].seconds == 30


def test_it_locks_an_address_that_guesses_many_accounts():
    lockout = Lockout(pair_limit=5, ip_limit=3, window=60, lock_for=30)
    for name in ("a", "b", "c"):
        lockout.failure(name, "10.0.0.1", now=0)
    assert lockout.retry_after("someone-else", "10.0.0.1", now=1) == 29
    assert lockout.retry_after("someone-else", "10.0.0.2", now=1) == 0


def test_it_counts_a_failure_without_an_account_against_the_address_only():
    lockout = Lockout(pair_limit=2, ip_limit=3, window=60, lock_for=30)
    assert lockout.failure("", "10.0.0.1", now=0) == []
    assert lockout.failure("", "10.0.0.1", now=0) == []
    [lock] = lockout.failure("", "10.0.0.1", now=0)
    assert (lock.scope, lock.describe()) == (Scope.IP, "address 10.0.0.1")


def test_it_keeps_the_scrape_token_in_its_own_bucket():
    lockout = Lockout(pair_limit=2, ip_limit=2, window=60, lock_for=30)
    lockout.failure(SCRAPE_ACCOUNT, "10.0.0.1", now=0)
    [lock] = lockout.failure(SCRAPE_ACCOUNT, "10.0.0.1", now=0)
    assert lock.scope == Scope.PAIR
    assert lockout.retry_after(SCRAPE_ACCOUNT, "10.0.0.1", now=1) > 0
    assert lockout.retry_after("ann", "10.0.0.1", now=1) == 0  # logins from that host go on


def test_it_clears_account_failures_on_success_but_not_the_address():
    lockout = Lockout(pair_limit=2, ip_limit=3, window=60, lock_for=30)
    lockout.failure("ann", "ip", now=0)
    lockout.success("ann", "ip", now=1)
    assert lockout.failure("ann", "ip", now=2) == []  # account count restarted
    [lock] = lockout.failure("bob", "ip", now=3)      # the address kept counting
    assert lock.scope == Scope.IP


def test_it_forgets_stale_entries_when_tracking_too_many():
    lockout = Lockout(pair_limit=5, ip_limit=1000, window=10, max_tracked=100)
    for index in range(500):
        lockout.failure(f"user{index}", "", now=float(index))
    assert len(lockout._failures) <= 100


@pytest.fixture
def locking_client(runtime):
    lockout = Lockout(pair_limit=3, ip_limit=50, window=60, lock_for=120)
    return TestClient(create_app(runtime, hasher=CHEAP_HASHER, lockout=lockout),
                      raise_server_exceptions=False)


def test_it_answers_429_even_to_the_right_password_while_locked(locking_client, runtime,
                                                                 clock):
    statuses = [locking_client.get("/", auth=("operator", "wrong-password-x")).status_code
                for _ in range(3)]
    assert statuses == [401, 401, 429]
    locked = locking_client.get("/", auth=auth("operator"))
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "120"
    clock.advance(60)
    assert locking_client.get("/", auth=auth("operator")).headers["retry-after"] == "60"
    clock.advance(61)
    assert locking_client.get("/", auth=auth("operator")).status_code == 200


def test_it_audits_failures_and_the_lockout_and_sends_one_notice(locking_client, runtime):
    for _ in range(5):
        locking_client.get("/", auth=("operator", "wrong-password-x"))
    flush_failures(locking_client)
    failed = audit_rows(runtime, "login.failed")
    [lock] = audit_rows(runtime, "login.lockout")
    # the first failure at once, the other two checked ones as one row with their count;
    # later tries are refused unread
    assert [r.reason for r in failed][0] == "wrong password"
    assert json.loads(failed[1].params)["count"] == 2
    assert failed[1].reason == "2 failed login(s) from testclient: wrong password x2"
    assert (lock.actor, lock.outcome) == ("operator", "denied")
    assert "account 'operator' from testclient locked" in lock.reason
    with runtime.store.read() as session:
        notices = list(session.exec(select(Notice).where(Notice.kind == "lockout")))
    assert len(notices) == 1
    assert "operator" in notices[0].subject
    assert "wrong-password-x" not in "".join(r.reason + r.params for r in failed + [lock])


def test_it_does_not_lock_other_accounts_when_one_is_locked(locking_client):
    for _ in range(3):
        locking_client.get("/", auth=("operator", "wrong-password-x"))
    assert locking_client.get("/", auth=auth("viewer")).status_code == 200


def test_it_lets_the_real_user_in_from_another_address_while_an_attacker_is_locked(runtime):
    """Five wrong passwords for admin from one address must not lock admin out elsewhere."""
    app = create_app(runtime, hasher=CHEAP_HASHER,
                     lockout=Lockout(pair_limit=5, ip_limit=20, lock_for=300))
    attacker = TestClient(app, client=("203.0.113.7", 5000))
    admin = TestClient(app, client=("198.51.100.1", 5000))
    statuses = [attacker.get("/api/status", auth=("admin", "Guess-number-1")).status_code
                for _ in range(7)]
    assert statuses == [401] * 4 + [429] * 3
    assert attacker.get("/api/status", auth=auth("admin")).status_code == 429
    assert admin.get("/api/status", auth=auth("admin")).status_code == 200
    assert admin.get("/api/status", auth=auth("admin")).status_code == 200  # cached, too


def test_it_throttles_a_malformed_header_flood_before_decoding_or_auditing(runtime):
    """60 `Basic !!!!` requests: the address is locked after ip_limit, and the audit log
    gets one row for the first failure, one aggregate and one lockout, not one per request."""
    app = create_app(runtime, hasher=CHEAP_HASHER, lockout=Lockout(ip_limit=20))
    client = TestClient(app)
    before = len(audit_rows(runtime))
    statuses = [client.get("/api/status", headers={"Authorization": "Basic !!!!"}).status_code
                for _ in range(60)]
    assert statuses == [401] * 19 + [429] * 41
    flush_failures(client)
    rows = audit_rows(runtime)[before:]
    assert [r.action for r in rows] == ["login.failed", "login.lockout", "login.failed"]
    assert json.loads(rows[2].params)["count"] == 19
    with runtime.store.read() as session:
        [notice] = session.exec(select(Notice).where(Notice.kind == "lockout"))
    assert "address testclient" in notice.subject and "''" not in notice.subject


class GatedHasher:
    """A fake PasswordHasher whose verify() counts calls and blocks until released, so that
    concurrent logins are all inside (or refused before) the password check at one moment."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return "fake$" + hashlib.sha256(password.encode()).hexdigest()

    def verify(self, hash: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
        self.release.wait(timeout=30)
        if hash != self.hash(password):
            raise VerifyMismatchError("mismatch")
        return True


def test_it_never_checks_more_concurrent_wrong_passwords_than_the_limit(runtime):
    hasher = GatedHasher()
    add_user(runtime.store, "ann", "viewer", "Ann-password-1234", now=runtime.clock(),
             audit_key=runtime.keys.audit, hasher=hasher)
    app = create_app(runtime, hasher=hasher,
                     lockout=Lockout(pair_limit=5, ip_limit=1000, window=60, lock_for=120))
    statuses: list[int] = []

    def attempt() -> None:
        response = TestClient(app).get("/api/status", auth=("ann", "Wrong-password-1"))
        statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for _ in range(3000):  # until every request is either answered or inside verify()
        if hasher.calls + len(statuses) >= 40:
            break
        time.sleep(0.01)
    hasher.release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert hasher.calls <= 5
    assert sorted(statuses) == [401] * 4 + [429] * 36
    assert len(audit_rows(runtime, "login.lockout")) == 1


def test_it_lets_remembered_credentials_in_while_wrong_ones_are_being_checked(runtime):
    lockout = Lockout(pair_limit=3, ip_limit=100, window=60, lock_for=120)
    client = TestClient(create_app(runtime, hasher=CHEAP_HASHER, lockout=lockout))
    assert client.get("/api/status", auth=auth("viewer")).status_code == 200  # now remembered
    in_flight = [lockout.reserve("viewer", "testclient", now=runtime.clock())
                 for _ in range(3)]
    assert all(in_flight)
    assert client.get("/api/status", auth=auth("viewer")).status_code == 200
    refused = client.get("/api/status", auth=("viewer", "Wrong-password-1"))
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
    assert audit_rows(runtime, "login.failed") == []  # refused before any check


def unknown_label(runtime, name: str) -> str:
    digest = hmac.new(runtime.keys.auth_cache, name.encode(), hashlib.sha256).hexdigest()
    return f"unknown:{digest[:12]}"


def test_it_records_an_unknown_user_name_only_as_a_keyed_digest(client, runtime):
    typo = "Secret-typed-in-the-name-field"
    for _ in range(2):
        client.get("/", auth=(typo, "whatever-123"))
    client.get("/", auth=("viewer", "Wrong-password-1"))
    flush_failures(client)
    first, rest = audit_rows(runtime, "login.failed")
    label = unknown_label(runtime, typo)
    assert (first.actor, rest.actor) == (label, "-")
    assert json.loads(rest.params)["accounts"] == {label: 1, "viewer": 1}
    assert typo not in "".join(str(r.model_dump()) for r in audit_rows(runtime))


def test_it_locks_an_unknown_name_under_its_digest(locking_client, runtime):
    typo = "Secret-typed-in-the-name-field"
    statuses = [locking_client.get("/", auth=(typo, "whatever-123")).status_code
                for _ in range(4)]
    assert statuses == [401, 401, 429, 429]
    label = unknown_label(runtime, typo)
    [lock] = audit_rows(runtime, "login.lockout")
    assert lock.actor == label and f"account '{label}' from testclient locked" in lock.reason
    with runtime.store.read() as session:
        [notice] = session.exec(select(Notice).where(Notice.kind == "lockout"))
    assert label in notice.subject
    assert typo not in notice.subject + notice.payload
    lockout = locking_client.app.state.web.lockout
    assert lockout.retry_after(label, "testclient", now=runtime.clock()) > 0


def test_it_writes_the_lockout_row_and_its_notice_in_one_transaction(locking_client, runtime):
    transactions: list[set[str]] = [set()]

    def on_execute(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO"):
            transactions[-1].add(statement.split()[2].strip('"'))

    def on_commit(_conn) -> None:
        transactions.append(set())

    event.listen(runtime.store.writer, "before_cursor_execute", on_execute)
    event.listen(runtime.store.writer, "commit", on_commit)
    try:
        for _ in range(3):
            locking_client.get("/", auth=("operator", "wrong-password-x"))
    finally:
        event.remove(runtime.store.writer, "before_cursor_execute", on_execute)
        event.remove(runtime.store.writer, "commit", on_commit)
    with_notice = [tables for tables in transactions if "notice" in tables]
    assert with_notice == [{"audit", "notice"}]
    [lock] = audit_rows(runtime, "login.lockout")
    assert lock.actor == "operator"


@pytest.mark.parametrize("pair_limit, ip_limit, reserved, admitted", [
    (2, 100, 2, False),  # two checks in flight for the account: a third waits
    (3, 100, 2, True),
    (5, 2, 2, False),    # the address's limit counts checks in flight too
])
def test_it_counts_checks_in_flight_against_the_limits(pair_limit, ip_limit, reserved,
                                                       admitted):
    lockout = Lockout(pair_limit=pair_limit, ip_limit=ip_limit, window=60, lock_for=30)
    for _ in range(reserved):
        assert lockout.reserve("ann", "ip", now=0) is not None
    assert (lockout.retry_after("ann", "ip", now=0) == 0) is admitted
    assert (lockout.reserve("ann", "ip", now=0) is not None) is admitted


def test_it_releases_a_successful_check_and_counts_a_failed_one():
    lockout = Lockout(pair_limit=2, ip_limit=100, window=60, lock_for=30)
    good = lockout.reserve("ann", "ip", now=0)
    bad = lockout.reserve("ann", "ip", now=0)
    assert lockout.reserve("ann", "ip", now=0) is None
    assert lockout.settle(good, ok=True, now=1) == []
    assert lockout.settle(bad, ok=False, now=1) == []  # one failure, below the limit
    third = lockout.reserve("ann", "ip", now=2)
    [lock] = lockout.settle(third, ok=False, now=2)
    assert (lock.scope, lock.key, lock.until) == (Scope.PAIR, "ann", 32)
