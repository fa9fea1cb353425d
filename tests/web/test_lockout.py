"""Brute-force lockout, as a pure window and through the dashboard with a fake clock."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from monitor.store import Notice
from monitor.web.app import create_app
from monitor.web.lockout import Lockout
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
