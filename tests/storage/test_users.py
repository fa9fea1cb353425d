"""Dashboard users: password rules, Argon2id hashes, audited changes, the first admin."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlmodel import select

from monitor.actor import Actor
from monitor.storage import audit
from monitor.storage.store import AuditRow, Store
from monitor.storage.users import (
    UserError,
    add_user,
    common_passwords,
    disable_user,
    ensure_admin,
    get_user,
    list_users,
    password_problem,
    set_password,
)

KEY = b"a" * 32
NOW = 1_750_000_000.0
ANN_PASSWORD = "Ann-password-1234"
HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def rows(store: Store) -> list[AuditRow]:
    with store.read() as session:
        return list(session.exec(select(AuditRow).order_by(AuditRow.seq)))


def add(store, name="ann", role="operator", password=ANN_PASSWORD, **kwargs):
    return add_user(store, name, role, password, now=NOW, audit_key=KEY, hasher=HASHER,
                    **kwargs)


@pytest.mark.parametrize("password, name, problem", [
    ("Short-1", "ann", "too short"),
    ("x" * 1025, "ann", "too long"),
    ("Password1234", "ann", "commonly used"),
    ("qwertyuiop123", "ann", "commonly used"),
    ("correcthorsebatterystaple", "ann", "commonly used"),
    ("Welcome2025!!", "ann", "commonly used"),
    ("baseball1234", "ann", "commonly used"),       # from the 20,000-entry list
    ("1qaz2wsx3edc", "ann", "commonly used"),
    # no composition rules: length and the list decide
    ("abcdefghijkmnop", "ann", None),
    ("483920174625", "ann", None),
    ("correct horse battery", "ann", None),
    ("Mallory-Admin1", "mallory-admin1", "equals the user name"),
    ("Grüße-aus-Köln", "ann", None),
    ("tangerine-ocelot-42", "ann", None),
    ("Xk9#mPq2vL8!", "ann", None),
])
def test_it_judges_passwords(password, name, problem):
    result = password_problem(password, name)
    assert (result is None) if problem is None else (problem in result)


def test_it_ships_a_list_of_thousands_of_common_passwords():
    assert len(common_passwords()) >= 3000
    assert {"password123", "qwerty", "iloveyou", "dragon"} <= common_passwords()


def test_it_stores_an_argon2id_hash_and_never_the_password(store):
    user = add(store)
    assert user.password_hash.startswith("$argon2id$")
    assert "Ann-password-1234" not in user.password_hash
    assert HASHER.verify(get_user(store, "ann").password_hash, "Ann-password-1234")


def test_it_audits_each_change_with_its_actor(store):
    add(store)
    set_password(store, "ann", "Ann-new-password-5678", now=NOW + 1, audit_key=KEY,
                 hasher=HASHER, actor=Actor("root", "admin", "10.0.0.1", "ua", "req-1"))
    add(store, "bob", "viewer", "Bob-password-1234")
    disable_user(store, "bob", now=NOW + 2, audit_key=KEY)
    audited = [(r.action, r.target, r.actor, r.role, r.source_ip, r.request_id)
               for r in rows(store)]
    assert audited == [
        ("user.add", "ann", "cli", "system", "", ""),
        ("user.passwd", "ann", "root", "admin", "10.0.0.1", "req-1"),
        ("user.add", "bob", "cli", "system", "", ""),
        ("user.disable", "bob", "cli", "system", "", ""),
    ]
    assert audit.verify(store, KEY).ok
    assert all("password" not in r.params.lower() for r in rows(store))


@pytest.mark.parametrize("name, role, password, message", [
    ("ann", "root", "Ann-password-1234", "unknown role"),
    ("bad name", "viewer", "Ann-password-1234", "bad user name"),
    ("", "viewer", "Ann-password-1234", "bad user name"),
    ("x" * 65, "viewer", "Ann-password-1234", "bad user name"),
    ("ann", "viewer", "password", "password refused: too short"),
])
def test_it_refuses_bad_users_without_writing(store, name, role, password, message):
    with pytest.raises(UserError, match=message):
        add(store, name, role, password)
    assert list_users(store) == [] and rows(store) == []


def test_it_refuses_a_duplicate_name(store):
    add(store)
    with pytest.raises(UserError, match="already exists"):
        add(store, role="viewer")
    assert [u.role for u in list_users(store)] == ["operator"]


def test_it_refuses_changes_to_unknown_users(store):
    with pytest.raises(UserError, match="no user named 'zed'"):
        set_password(store, "zed", "Zed-password-1234", now=NOW, audit_key=KEY, hasher=HASHER)
    with pytest.raises(UserError, match="no user named"):
        disable_user(store, "zed", now=NOW, audit_key=KEY)


def test_it_keeps_the_last_enabled_admin(store):
    add(store, "root", "admin", "Root-password-1234")
    with pytest.raises(UserError, match="last enabled admin"):
        disable_user(store, "root", now=NOW, audit_key=KEY)
    add(store, "root2", "admin", "Root2-password-1234")
    disable_user(store, "root", now=NOW, audit_key=KEY)
    with pytest.raises(UserError, match="already disabled"):
        disable_user(store, "root", now=NOW, audit_key=KEY)
    assert [(u.name, u.disabled) for u in list_users(store)] == [("root", True),
                                                                  ("root2", False)]


def test_it_creates_the_first_admin_once_with_a_random_password(store):
    generated = ensure_admin(store, password=None, now=NOW, audit_key=KEY, hasher=HASHER)
    assert generated and len(generated) >= 20 and password_problem(generated, "admin") is None
    admin = get_user(store, "admin")
    assert admin.role == "admin" and HASHER.verify(admin.password_hash, generated)
    assert ensure_admin(store, password=None, now=NOW, audit_key=KEY, hasher=HASHER) is None
    assert [u.name for u in list_users(store)] == ["admin"]
    assert [(r.action, r.actor) for r in rows(store)] == [("user.add", "monitor")]


def test_it_creates_the_first_admin_with_the_configured_password(store):
    assert ensure_admin(store, password="Configured-admin-42", now=NOW, audit_key=KEY,
                        hasher=HASHER) is None
    assert HASHER.verify(get_user(store, "admin").password_hash, "Configured-admin-42")


def test_it_refuses_a_weak_configured_admin_password(store):
    with pytest.raises(UserError, match="MONITOR_ADMIN_PASSWORD refused"):
        ensure_admin(store, password="admin", now=NOW, audit_key=KEY, hasher=HASHER)
    assert list_users(store) == []


def test_it_creates_no_admin_when_users_exist(store):
    add(store, "ops", "operator", "Ops-password-1234")
    assert ensure_admin(store, password=None, now=NOW, audit_key=KEY, hasher=HASHER) is None
    assert [u.name for u in list_users(store)] == ["ops"]
