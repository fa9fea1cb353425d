"""HTTP Basic: UTF-8 credentials, constant work for unknown users, the success cache."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from argon2.exceptions import VerifyMismatchError
from fastapi.testclient import TestClient

from monitor.storage.users import add_user, disable_user, set_password
from monitor.web.app import create_app
from monitor.web.security.auth import BadCredentials, Credentials, parse_basic
from tests.web.support import CHEAP_HASHER, audit_rows, auth, flush_failures


class RecordingHasher:
    """A fake PasswordHasher that records which hashes it verified against."""

    def __init__(self) -> None:
        self.verified: list[str] = []

    def hash(self, password: str) -> str:
        return "fake$" + hashlib.sha256(password.encode()).hexdigest()

    def verify(self, hash: str, password: str) -> bool:
        self.verified.append(hash)
        if hash != self.hash(password):
            raise VerifyMismatchError("mismatch")
        return True


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("Bearer abc", None),
    (basic("ann", "pa:ss"), Credentials("ann", "pa:ss")),
    (basic("jürgen", "pässwörd-€-✓"), Credentials("jürgen", "pässwörd-€-✓")),
    ("basic " + base64.b64encode(b"ann:x").decode(), Credentials("ann", "x")),
])
def test_it_decodes_basic_credentials_as_utf8(header, expected):
    assert parse_basic(header) == expected


@pytest.mark.parametrize("header", [
    "Basic !!!notbase64",
    "Basic " + base64.b64encode(b"ann:\xff\xfe").decode(),   # not UTF-8
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b":only-password").decode(),
])
def test_it_refuses_malformed_basic_credentials(header):
    with pytest.raises(BadCredentials):
        parse_basic(header)


def test_it_logs_in_with_a_non_ascii_password(runtime, client):
    password = "Grüße-aus-Köln-€-✓"
    add_user(runtime.store, "juergen", "viewer", password, now=runtime.clock(),
             audit_key=runtime.keys.audit, hasher=CHEAP_HASHER)
    response = client.get("/api/status", headers={"Authorization": basic("juergen", password)})
    assert response.status_code == 200
    wrong = client.get("/api/status",
                       headers={"Authorization": basic("juergen", "Grusse-aus-Koeln")})
    assert wrong.status_code == 401


@pytest.fixture
def recorded(runtime):
    hasher = RecordingHasher()
    add_user(runtime.store, "ann", "viewer", "Ann-password-1234", now=runtime.clock(),
             audit_key=runtime.keys.audit, hasher=hasher)
    app = create_app(runtime, hasher=hasher)
    hasher.verified.clear()
    return hasher, app, TestClient(app)


def test_it_verifies_an_unknown_user_against_the_dummy_hash(recorded, runtime):
    hasher, app, client = recorded
    response = client.get("/", auth=("nobody", "Some-password-123"))
    assert response.status_code == 401
    assert hasher.verified == [app.state.web.auth.dummy_hash]
    [row] = audit_rows(runtime, "login.failed")
    assert row.actor.startswith("unknown:") and row.reason == "unknown user"


def test_it_verifies_a_disabled_user_and_still_refuses(recorded, runtime):
    hasher, _, client = recorded
    disable_user(runtime.store, "ann", now=runtime.clock(), audit_key=runtime.keys.audit)
    assert client.get("/", auth=("ann", "Ann-password-1234")).status_code == 401
    assert len(hasher.verified) == 1
    assert audit_rows(runtime, "login.failed")[0].reason == "account disabled"


def test_it_caches_a_successful_check_for_a_while(recorded, clock):
    hasher, _, client = recorded
    for _ in range(3):
        assert client.get("/api/status", auth=("ann", "Ann-password-1234")).status_code == 200
    assert len(hasher.verified) == 1
    clock.advance(61)
    assert client.get("/api/status", auth=("ann", "Ann-password-1234")).status_code == 200
    assert len(hasher.verified) == 2


def test_it_never_caches_a_failure(recorded):
    hasher, _, client = recorded
    for _ in range(2):
        assert client.get("/api/status", auth=("ann", "wrong-password-1")).status_code == 401
    assert len(hasher.verified) == 2


@pytest.mark.parametrize("change", ["password", "disable"])
def test_it_drops_the_cache_when_the_user_changes(recorded, runtime, change):
    hasher, _, client = recorded
    assert client.get("/api/status", auth=("ann", "Ann-password-1234")).status_code == 200
    if change == "password":  # as the CLI would do it, from another process
        set_password(runtime.store, "ann", "Ann-new-password-5678", now=runtime.clock(),
                     audit_key=runtime.keys.audit, hasher=hasher)
    else:
        disable_user(runtime.store, "ann", now=runtime.clock(), audit_key=runtime.keys.audit)
    assert client.get("/api/status", auth=("ann", "Ann-password-1234")).status_code == 401


def test_it_uses_the_role_stored_for_the_user(client):
    assert client.get("/users", auth=auth("operator")).status_code == 403
    assert client.get("/users", auth=auth("admin")).status_code == 200


def test_it_never_writes_a_password_into_the_audit_log(client, runtime):
    client.get("/", auth=("viewer", "Not-the-password-42"))
    client.get("/", headers={"Authorization": "Basic !!!"})
    flush_failures(client)
    text = "".join(str(r.model_dump()) for r in audit_rows(runtime))
    assert "Not-the-password-42" not in text
    first, rest = audit_rows(runtime, "login.failed")
    assert (first.reason, json.loads(rest.params)["count"]) == ("wrong password", 1)
