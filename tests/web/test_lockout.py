"""Brute-force lockout, as a pure window and through the dashboard with a fake clock."""

from __future__ import annotations

import hashlib
import hmac
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
from monitor.web.security.throttle import Lockout
from tests.web.support import CHEAP_HASHER, audit_rows, auth


@pytest.mark.parametrize("failures, gap, locked", [
    (4, 1.0, False),     # below the limit
    (5, 1.0, True),      # the fifth failure in the window locks
    (5, 80.0, False),    # spread over more than the window: never 5 at once
])
def test_it_locks_an_account_after_too_many_failures_in_the_window(failures, gap, locked):
    lockout = Lockout(account_limit=5, ip_limit=100, window=300, lock_for=60)
    now = 1000.0
    for _ in range(failures):
        lockout.failure("ann", "10.0.0.1", now=now)
        now += gap
    assert (lockout.retry_after("ann", "10.0.0.9", now=now) > 0) is locked


def test_it_reports_each_lock_once_and_unlocks_after_lock_for():
    lockout = Lockout(account_limit=2, ip_limit=100, window=60, lock_for=30)
    assert lockout.failure("ann", "ip", now=0) == []
    [lock] = lockout.failure("ann", "ip", now=1)
    assert (lock.scope, lock.key, lock.until) == ("account", "ann", 31)
    assert lockout.failure("ann", "ip", now=2) == []  # already locked: no second report
    assert lockout.retry_after("ann", "ip", now=2) == 29
    assert lockout.retry_after("ann", "ip", now=31) == 0


def test_it_locks_an_address_that_guesses_many_accounts():
    lockout = Lockout(account_limit=5, ip_limit=3, window=60, lock_for=30)
    for name in ("a", "b", "c"):
        lockout.failure(name, "10.0.0.1", now=0)
    assert lockout.retry_after("someone-else", "10.0.0.1", now=1) == 29
    assert lockout.retry_after("someone-else", "10.0.0.2", now=1) == 0


def test_it_clears_account_failures_on_success_but_not_the_address():
    lockout = Lockout(account_limit=2, ip_limit=3, window=60, lock_for=30)
    lockout.failure("ann", "ip", now=0)
    lockout.success("ann", now=1)
    assert lockout.failure("ann", "ip", now=2) == []  # account count restarted
    [lock] = lockout.failure("bob", "ip", now=3)      # the address kept counting
    assert lock.scope == "ip"


def test_it_forgets_stale_entries_when_tracking_too_many():
    lockout = Lockout(account_limit=5, ip_limit=1000, window=10, max_tracked=100)
    for index in range(500):
        lockout.failure(f"user{index}", "", now=float(index))
    assert len(lockout._failures) <= 100


@pytest.fixture
def locking_client(runtime):
    lockout = Lockout(account_limit=3, ip_limit=50, window=60, lock_for=120)
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
    failed = audit_rows(runtime, "login.failed")
    [lock] = audit_rows(runtime, "login.lockout")
    assert [r.reason for r in failed] == ["wrong password"] * 3  # later tries are refused unread
    assert (lock.actor, lock.outcome) == ("operator", "denied")
    assert "account 'operator' locked" in lock.reason
    with runtime.store.read() as session:
        notices = list(session.exec(select(Notice).where(Notice.kind == "lockout")))
    assert len(notices) == 1
    assert "operator" in notices[0].subject
    assert "wrong-password-x" not in "".join(r.reason + r.params for r in failed + [lock])


def test_it_does_not_lock_other_accounts_when_one_is_locked(locking_client):
    for _ in range(3):
        locking_client.get("/", auth=("operator", "wrong-password-x"))
    assert locking_client.get("/", auth=auth("viewer")).status_code == 200


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
                     lockout=Lockout(account_limit=5, ip_limit=1000, window=60, lock_for=120))
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
    lockout = Lockout(account_limit=3, ip_limit=100, window=60, lock_for=120)
    client = TestClient(create_app(runtime, hasher=CHEAP_HASHER, lockout=lockout))
    assert client.get("/api/status", auth=auth("viewer")).status_code == 200  # now remembered
    in_flight = [lockout.reserve("viewer", "10.9.9.9", now=runtime.clock()) for _ in range(3)]
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
    rows = audit_rows(runtime, "login.failed")
    assert [r.actor for r in rows] == [unknown_label(runtime, typo)] * 2 + ["viewer"]
    assert typo not in "".join(str(r.model_dump()) for r in audit_rows(runtime))


def test_it_locks_an_unknown_name_under_its_digest(locking_client, runtime):
    typo = "Secret-typed-in-the-name-field"
    statuses = [locking_client.get("/", auth=(typo, "whatever-123")).status_code
                for _ in range(4)]
    assert statuses == [401, 401, 429, 429]
    label = unknown_label(runtime, typo)
    [lock] = audit_rows(runtime, "login.lockout")
    assert lock.actor == label and f"account '{label}' locked" in lock.reason
    with runtime.store.read() as session:
        [notice] = session.exec(select(Notice).where(Notice.kind == "lockout"))
    assert label in notice.subject
    assert typo not in notice.subject + notice.payload
    assert locking_client.app.state.web.lockout.retry_after(label, "", now=runtime.clock()) > 0


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


@pytest.mark.parametrize("account_limit, ip_limit, reserved, admitted", [
    (2, 100, 2, False),  # two checks in flight for the account: a third waits
    (3, 100, 2, True),
    (5, 2, 2, False),    # the address's limit counts checks in flight too
])
def test_it_counts_checks_in_flight_against_the_limits(account_limit, ip_limit, reserved,
                                                       admitted):
    lockout = Lockout(account_limit=account_limit, ip_limit=ip_limit, window=60, lock_for=30)
    for _ in range(reserved):
        assert lockout.reserve("ann", "ip", now=0) is not None
    assert (lockout.retry_after("ann", "ip", now=0) == 0) is admitted
    assert (lockout.reserve("ann", "ip", now=0) is not None) is admitted


def test_it_releases_a_successful_check_and_counts_a_failed_one():
    lockout = Lockout(account_limit=2, ip_limit=100, window=60, lock_for=30)
    good = lockout.reserve("ann", "ip", now=0)
    bad = lockout.reserve("ann", "ip", now=0)
    assert lockout.reserve("ann", "ip", now=0) is None
    assert lockout.settle(good, ok=True, now=1) == []
    assert lockout.settle(bad, ok=False, now=1) == []  # one failure, below the limit
    third = lockout.reserve("ann", "ip", now=2)
    [lock] = lockout.settle(third, ok=False, now=2)
    assert (lock.scope, lock.key, lock.until) == ("account", "ann", 32)
