"""Self-service password change: every user, CSRF, current password required, audited."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from monitor.storage.users import get_user
from monitor.web.app import create_app
from monitor.web.security.throttle import Lockout
from tests.web.support import (
    CHEAP_HASHER,
    PASSWORDS,
    SAME_ORIGIN,
    audit_rows,
    auth,
    token,
    token_from,
)

NEW = "tangerine ocelot forty two"


def change(client, role: str, current: str, new: str = NEW, confirm: str | None = None,
           headers: dict | None = None):
    form = {"csrf_token": token(client, role), "current_password": current,
            "new_password": new, "confirm_password": new if confirm is None else confirm}
    return client.post("/account/password", data=form, auth=auth(role),
                       headers=SAME_ORIGIN if headers is None else headers)


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_it_lets_every_user_change_their_own_password(client, runtime, role):
    page = client.get("/account/password", auth=auth(role))
    assert page.status_code == 200 and 'name="current_password"' in page.text
    response = change(client, role, PASSWORDS[role])
    assert response.status_code == 200 and "Password changed" in response.text
    assert client.get("/api/status", auth=auth(role)).status_code == 401  # old one is dead
    assert client.get("/api/status", auth=(role, NEW)).status_code == 200
    [row] = [r for r in audit_rows(runtime, "user.passwd") if r.outcome == "ok"]
    assert (row.actor, row.role, row.target) == (role, role, role)
    assert NEW not in str(row.model_dump()) and PASSWORDS[role] not in str(row.model_dump())


@pytest.mark.parametrize("current, new, confirm, status, reason", [
    ("Wrong-password-99", NEW, None, 403, "current_password: wrong password"),
    (PASSWORDS["operator"], NEW, NEW + "x", 422, "differ"),
    (PASSWORDS["operator"], "short", None, 422, "too short"),
    (PASSWORDS["operator"], "password1234", None, 422, "commonly used"),
    (PASSWORDS["operator"], "operator", None, 422, "too short"),
])
def test_it_refuses_a_bad_change_audits_it_and_changes_nothing(client, runtime, current, new,
                                                               confirm, status, reason):
    before = get_user(runtime.store, "operator").password_hash
    response = change(client, "operator", current, new, confirm)
    assert response.status_code == status
    assert reason in response.text
    assert get_user(runtime.store, "operator").password_hash == before
    [row] = audit_rows(runtime, "user.passwd")
    assert row.outcome in ("denied", "invalid") and reason in row.reason
    assert json.loads(row.params)["self_service"] is True


def test_it_refuses_a_change_without_a_valid_csrf_token(client, runtime):
    before = get_user(runtime.store, "viewer").password_hash
    response = client.post("/account/password", auth=auth("viewer"), headers=SAME_ORIGIN,
                           data={"csrf_token": "1.x", "current_password": PASSWORDS["viewer"],
                                 "new_password": NEW, "confirm_password": NEW})
    assert response.status_code == 403
    assert get_user(runtime.store, "viewer").password_hash == before
    assert [r.action for r in audit_rows(runtime)][-1] == "csrf.rejected"


def test_it_throttles_guesses_of_the_current_password(runtime):
    app = create_app(runtime, hasher=CHEAP_HASHER, lockout=Lockout(pair_limit=3))
    client = TestClient(app)
    statuses = [change(client, "viewer", f"Guess-{n}-password").status_code for n in range(4)]
    assert statuses == [403, 403, 429, 429]
    assert change(client, "viewer", PASSWORDS["viewer"]).status_code == 429


def test_it_kills_csrf_tokens_issued_before_the_change(client):
    old_token = token_from(client.get("/", auth=auth("operator")).text)
    assert change(client, "operator", PASSWORDS["operator"]).status_code == 200
    response = client.post("/actions/pause", data={"csrf_token": old_token},
                           auth=("operator", NEW), headers=SAME_ORIGIN, follow_redirects=False)
    assert response.status_code == 403
