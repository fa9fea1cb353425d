"""Secrets: the monitor's master key and the chaos token, from settings or generated once.

Generated secrets live in the data directory with mode 0600, so `make run` needs no
configuration and no secret is ever in the repository. Every purpose gets its own subkey,
derived by HMAC from the master key, so a leaked CSRF token says nothing about the audit key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from monitor.config import ConfigError, Settings
from monitor.storage.datadir import fsync_dir, group_or_world_readable

MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Keys:
    secret: bytes
    chaos_token: str

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self.secret, purpose.encode(), hashlib.sha256).digest()

    @property
    def audit(self) -> bytes:
        return self.derive("audit-chain")

    @property
    def csrf(self) -> bytes:
        return self.derive("csrf")

    @property
    def auth_cache(self) -> bytes:
        return self.derive("auth-cache")


def load_keys(settings: Settings, *, create: bool = True) -> Keys:
    """Read configured secrets (refusing weak ones) or those stored in the data directory,
    creating them on first start. `create=False` is for read-only commands (audit verify):
    a missing key then is an error, never a fresh key that would fail every row."""
    secret = _configured(settings.secret_key, "MONITOR_SECRET_KEY")
    token = _configured(settings.chaos_token, "MONITOR_CHAOS_TOKEN")
    if create:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secret or _stored_secret(settings.data_dir / "secret.key", create=create)
    if not token and create:
        token = _stored_secret(settings.data_dir / "chaos.token", create=True)
    return Keys(secret=secret.encode(), chaos_token=token or "")


def _configured(value: SecretStr | None, name: str) -> str | None:
    if value is None or not value.get_secret_value():
        return None
    raw = value.get_secret_value()
    if len(raw) < MIN_SECRET_LENGTH or len(set(raw)) < 8:
        raise ConfigError(
            f"bad setting {name}: too weak, use at least {MIN_SECRET_LENGTH} random characters "
            "(or leave it unset to have one generated)"
        )
    return raw


def _stored_secret(path: Path, *, create: bool) -> str:
    """The secret in `path`; a damaged file is an error, never silently replaced (the audit
    chain and every session depend on it)."""
    if path.exists():
        if group_or_world_readable(path):
            raise ConfigError(f"{path} is readable by other users (mode "
                              f"{path.stat().st_mode & 0o777:o}); run `chmod 600 {path}` and "
                              "consider the key leaked if others could log in here")
        value = path.read_text().strip()
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(f"{path} is damaged (shorter than {MIN_SECRET_LENGTH} characters)"
                              "; restore it from a backup or move it away to start afresh")
        return value
    if not create:
        raise ConfigError(f"{path} does not exist: is MONITOR_DATA_DIR "
                          f"({path.parent}) the monitor's data directory?")
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(path.parent)  # a power cut must not lose the key the audit MACs depend on
    return value
