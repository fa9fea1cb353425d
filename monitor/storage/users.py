"""Dashboard users: Argon2id password hashes, roles, password rules, audited changes.

Every change writes one audit row in the same write transaction as the change itself. The
acting party is `actor`: a plain name (the CLI passes nothing and is recorded as "cli") or any
object with `name`, `role`, `source_ip`, `user_agent` and `request_id` (the runtime's Actor).
"""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from argon2 import PasswordHasher
from sqlmodel import Session, func, select

from monitor.actor import Actor
from monitor.storage import audit
from monitor.storage.store import Store, User

ROLES = ("viewer", "operator", "admin")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
ADMIN_NAME = "admin"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_COMMON_FILE = Path(__file__).with_name("common_passwords.txt")


class Hasher(Protocol):
    """What we need of argon2.PasswordHasher (tests pass cheap or recording fakes)."""

    def hash(self, password: str) -> str: ...
    def verify(self, hash: str, password: str) -> bool: ...


class UserError(ValueError):
    """A user change was refused; the message says why, in words an operator can act on."""


@lru_cache(maxsize=1)
def default_hasher() -> PasswordHasher:
    """argon2-cffi's defaults: Argon2id with the RFC 9106 low-memory parameters."""
    return PasswordHasher()


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = _COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().casefold() for line in lines
                     if line.strip() and not line.startswith("#"))


def password_problem(password: str, name: str = "") -> str | None:
    """Why `password` is too weak for user `name`, or None when it is acceptable.

    Length and a list of common passwords only: no composition rules (ASVS 6.2.5, NIST SP
    800-63B 3.1.1.2), since they push people towards `Password1!` without making guessing
    harder. The list (common_passwords.txt) holds about 20,000 entries."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"too short: use at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"too long: use at most {MAX_PASSWORD_LENGTH} characters"
    folded = password.casefold()
    if name and folded == name.casefold():
        return "equals the user name"
    common = common_passwords()
    if folded in common or folded.rstrip("0123456789!") in common:
        return "is a commonly used password"
    return None


def name_problem(name: str) -> str | None:
    if not _NAME.fullmatch(name):
        return ("user names are 1-64 characters: letters, digits and . _ @ -, "
                "starting with a letter or digit")
    return None


# Reads ---------------------------------------------------------------------------------------
def get_user(store: Store, name: str) -> User | None:
    with store.read() as session:
        return session.exec(select(User).where(User.name == name)).first()


def list_users(store: Store) -> list[User]:
    with store.read() as session:
        return list(session.exec(select(User).order_by(User.name)))


# Changes -------------------------------------------------------------------------------------
def add_user(store: Store, name: str, role: str, password: str, *, now: float, audit_key: bytes,
             actor: Actor | str = "cli", hasher: Hasher | None = None) -> User:
    """Create a user; refuses a bad name, an unknown role, a weak password or a duplicate."""
    _check_new(name, role, password)
    password_hash = (hasher or default_hasher()).hash(password)
    with store.write() as session:
        if _find(session, name) is not None:
            raise UserError(f"user {name!r} already exists")
        user = User(name=name, role=role, password_hash=password_hash, created_at=now)
        session.add(user)
        session.flush()
        _audit(session, audit_key, now, actor, "user.add", name, {"role": role})
    return user


def set_password(store: Store, name: str, password: str, *, now: float, audit_key: bytes,
                 actor: Actor | str = "cli", hasher: Hasher | None = None) -> None:
    problem = password_problem(password, name)
    if problem:
        raise UserError(f"password refused: {problem}")
    password_hash = (hasher or default_hasher()).hash(password)
    with store.write() as session:
        user = _existing(session, name)
        user.password_hash = password_hash
        session.add(user)
        _audit(session, audit_key, now, actor, "user.passwd", name, {})


def disable_user(store: Store, name: str, *, now: float, audit_key: bytes,
                 actor: Actor | str = "cli") -> None:
    """Disable a user; the last enabled admin cannot be disabled (nobody could manage users)."""
    with store.write() as session:
        user = _existing(session, name)
        if user.disabled:
            raise UserError(f"user {name!r} is already disabled")
        if user.role == "admin" and _enabled_admins(session) <= 1:
            raise UserError(f"user {name!r} is the last enabled admin and cannot be disabled")
        user.disabled = True
        session.add(user)
        _audit(session, audit_key, now, actor, "user.disable", name, {})


def ensure_admin(store: Store, *, password: str | None, now: float, audit_key: bytes,
                 hasher: Hasher | None = None) -> str | None:
    """First start: create `admin` when there are no users at all.

    Uses `password` (checked like any other) or a random one; returns the generated password so
    the caller can print it once, and None when users already exist or a password was given.
    """
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(18)
    else:
        problem = password_problem(password, ADMIN_NAME)
        if problem:
            raise UserError(f"MONITOR_ADMIN_PASSWORD refused: {problem}")
    password_hash = (hasher or default_hasher()).hash(password)
    with store.write() as session:
        if session.exec(select(func.count()).select_from(User)).one() > 0:
            return None
        session.add(User(name=ADMIN_NAME, role="admin", password_hash=password_hash,
                         created_at=now))
        _audit(session, audit_key, now, "monitor", "user.add", ADMIN_NAME,
               {"role": "admin", "first_start": True, "generated": generated is not None})
    return generated


# Helpers -------------------------------------------------------------------------------------
def _check_new(name: str, role: str, password: str) -> None:
    problem = name_problem(name)
    if problem:
        raise UserError(f"bad user name {name!r}: {problem}")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    problem = password_problem(password, name)
    if problem:
        raise UserError(f"password refused: {problem}")


def _find(session: Session, name: str) -> User | None:
    return session.exec(select(User).where(User.name == name)).first()


def _existing(session: Session, name: str) -> User:
    user = _find(session, name)
    if user is None:
        raise UserError(f"no user named {name!r}")
    return user


def _enabled_admins(session: Session) -> int:
    query = select(func.count()).select_from(User).where(User.role == "admin",
                                                         User.disabled == False)  # noqa: E712
    return session.exec(query).one()


def _audit(session: Session, key: bytes, now: float, actor: Actor | str, action: str,
           target: str, params: dict) -> None:
    who = Actor(actor, "system") if isinstance(actor, str) else actor
    audit.append(session, key, now=now, action=action, target=target, params=params,
                 **who.audit_fields())
