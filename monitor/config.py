"""Settings: MONITOR_* environment variables and `.env`, validated loudly at start.

Lists and maps are parsed once, here, into typed values (`services` and `extra_services` dicts,
`service_ports` three ints, `trusted_proxies` and `smtp_to` tuples); policy defaults: `Policy`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from monitor import setting_values
from monitor.failover.canary import Canary
from monitor.failover.model import Policy
from monitor.gateway.balance import Balance
from monitor.setting_values import check_ages, is_loopback, items, parse_ports, parse_services

VERSIONS = ("v1", "v2", "v3")
DATABASE_SCHEMES = ("sqlite:///", "postgresql+psycopg://")
SmtpMode = Literal["ssl", "starttls", "plain"]
DEFAULT_POLICY = Policy()
# MONITOR_* names read outside Settings: the templates lookup, the CLI's new password, and the
# test suite's "fail instead of skip" switches.
OTHER_NAMES = frozenset({"MONITOR_TEMPLATES_DIR", "MONITOR_NEW_PASSWORD",
                         "MONITOR_REQUIRE_BROWSER", "MONITOR_REQUIRE_HAPROXY",
                         "MONITOR_REQUIRE_POSTGRES"})


class DataPlane(StrEnum):
    """Who carries client traffic: the monitor's own gateway process, or HAProxy."""

    EMBEDDED = "embedded"
    HAPROXY = "haproxy"


class Settings(BaseSettings):
    """Every knob of the monitor. See `.env.example` for one line per field."""

    model_config = SettingsConfigDict(
        env_prefix="MONITOR_", env_file=".env", extra="ignore", validate_default=True,
        env_ignore_empty=True,  # `MONITOR_TLS_CERTFILE=` means unset, not the path "."
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    gateway_port: int = Field(8080, ge=1, le=65535)
    data_dir: Path = Path("./data")
    database_url: str = ""
    services: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    service_ports: Annotated[tuple[int, int, int], NoDecode] = (8001, 8002, 8003)
    extra_services: setting_values.Fleet = Field(default_factory=dict)

    interval: float = Field(DEFAULT_POLICY.interval, gt=0, le=3600)
    fast_interval: float = Field(DEFAULT_POLICY.fast_interval, gt=0, le=3600)
    down_interval: float = Field(DEFAULT_POLICY.down_interval, gt=0, le=3600)
    timeout: float = Field(1.0, gt=0, le=600)
    slow_ms: float = Field(0.0, ge=0)
    probe_concurrency: int = Field(64, ge=1, le=10_000)
    fall: int = Field(DEFAULT_POLICY.fall, ge=1, le=100)
    rise: int = Field(DEFAULT_POLICY.rise, ge=1, le=100)
    cooldown: float = Field(DEFAULT_POLICY.cooldown, ge=0, le=86400)
    startup_grace: float = Field(DEFAULT_POLICY.startup_grace, ge=0, le=3600)
    auto_failback_after: float = Field(DEFAULT_POLICY.auto_failback_after, ge=0, le=86400)
    retention_hours: float = Field(24.0, gt=0, le=24 * 365)
    rollup_minute_days: float = Field(30.0, gt=0, le=3650)
    rollup_hour_days: float = Field(365.0, gt=0, le=36500)
    notice_retention_days: float = Field(90.0, gt=0, le=36500)
    restart_delay: float = Field(5.0, ge=0, le=300)
    lease_ttl: float = Field(5.0, ge=1.0, le=300)
    lease_renew: float = Field(0.0, ge=0, le=150)  # 0 = lease_ttl / 3
    spec: Path | None = None  # desired-state YAML applied at start (MONITOR_SPEC)

    # The canary (monitor/failover/canary.py); defaults match the shipped catalog.
    canary_query: str = Field("Pride and Prejudice", min_length=1, max_length=200)
    canary_book_id: str = Field("pride-and-prejudice", min_length=1, max_length=200)
    canary_digest: str = Field(
        "6d4813cc4c19cb9292c57d82c5a982f6ec766daea496b6e4812353a80ee0f2d6",
        pattern=r"^[0-9a-f]{64}$")
    # Data plane (the gateway process, or HAProxy driven through its Runtime API).
    spawn_gateway: bool = True
    dataplane: DataPlane = DataPlane.EMBEDDED
    haproxy_socket: str = ""
    haproxy_backend: str = "books"
    gateway_workers: int = Field(1, ge=1, le=64)
    gateway_read_timeout: float = Field(10.0, gt=0, le=300)
    gateway_max_header: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    gateway_max_body: int = Field(1_000_000, ge=1024, le=100_000_000)
    gateway_conns_per_ip: int = Field(256, ge=1, le=100_000)
    gateway_keepalive: float = Field(5.0, gt=0, le=3600)
    gateway_attempt_max: float = Field(2.0, gt=0, le=60)
    gateway_hedge: bool = True
    dashboard_header_timeout: float = Field(10.0, gt=0, le=300)
    dashboard_conns_per_ip: int = Field(64, ge=1, le=100_000)
    gateway_balance: Balance = Balance.LEAST_OUTSTANDING

    secret_key: SecretStr | None = None
    chaos_token: SecretStr | None = None
    admin_password: SecretStr | None = None
    scrape_token: SecretStr | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    public_url: str = ""
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    allow_plain_http: bool = False
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    audit_checkpoint_url: str = ""

    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_mode: SmtpMode = "starttls"
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    smtp_from: str = ""
    smtp_to: Annotated[tuple[str, ...], NoDecode] = ()
    smtp_timeout: float = Field(10.0, gt=0, le=300)
    smtp_cafile: Path | None = None
    notify_remind_every: float = Field(1800.0, ge=0)
    notify_give_up_after: float = Field(86400.0, gt=0)
    notify_group_window: float = Field(5.0, ge=0, le=600)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_addresses(cls, value: Any) -> tuple[str, ...]:
        addresses = items(value)
        for address in addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return addresses

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(DATABASE_SCHEMES):
            raise ValueError(f"expected a URL starting with {' or '.join(DATABASE_SCHEMES)}")
        return value

    @field_validator("audit_checkpoint_url")
    @classmethod
    def _checkpoint_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if value.strip() and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError(f"expected an http(s) URL, got {value[:80]!r}")
        return value.strip()

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _host_names(cls, value: Any) -> tuple[str, ...]:
        names = tuple(n.lower() for n in items(value))
        for name in names:
            if not re.fullmatch(r"(\*\.)?[a-z0-9.:\[\]-]{1,253}", name):
                raise ValueError(f"{name[:80]!r} is not a host name or address")
        return names

    @field_validator("smtp_to", mode="before")
    @classmethod
    def _recipients(cls, value: Any) -> tuple[str, ...]:
        return items(value)

    @field_validator("services", mode="before")
    @classmethod
    def _service_urls(cls, value: Any) -> dict[str, str]:
        return dict(value) if isinstance(value, Mapping) else parse_services(str(value))

    @field_validator("service_ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> tuple[int, int, int]:
        if isinstance(value, str):
            return parse_ports(value)
        return value  # type: ignore[no-any-return]  # a tuple given in code; pydantic checks it

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.timeout >= self.interval:
            raise ValueError(
                f"MONITOR_TIMEOUT ({self.timeout}) must be below MONITOR_INTERVAL ({self.interval})"
            )
        if self.fast_interval > self.interval:
            raise ValueError("MONITOR_FAST_INTERVAL must not exceed MONITOR_INTERVAL")
        if self.smtp_mode == "plain" and self.smtp_host and not is_loopback(self.smtp_host):
            raise ValueError("MONITOR_SMTP_MODE=plain is allowed only for a loopback SMTP host")
        if self.smtp_host and (not self.smtp_from or not self.smtp_to):
            raise ValueError("MONITOR_SMTP_FROM and MONITOR_SMTP_TO are required with SMTP_HOST")
        check_ages(self.retention_hours, self.rollup_minute_days, self.rollup_hour_days)
        if self.lease_renew > self.lease_ttl / 2:
            raise ValueError(f"MONITOR_LEASE_RENEW ({self.lease_renew}) must be at most half "
                             f"of MONITOR_LEASE_TTL ({self.lease_ttl})")
        if self.dataplane == DataPlane.HAPROXY and not self.haproxy_socket:
            raise ValueError("MONITOR_HAPROXY_SOCKET is required with MONITOR_DATAPLANE=haproxy")
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("MONITOR_TLS_CERTFILE and MONITOR_TLS_KEYFILE go together")
        if not is_loopback(self.host) and not self.tls_certfile and not self.allow_plain_http:
            raise ValueError(
                f"MONITOR_HOST {self.host} is not a loopback address: serving the dashboard "
                "there needs TLS (MONITOR_TLS_CERTFILE/_KEYFILE) or MONITOR_ALLOW_PLAIN_HTTP=1")
        ports = [self.port, self.gateway_port]
        if not self.services:
            ports += self.service_ports
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports must all differ, got {ports}")
        return self

    # Derived values -----------------------------------------------------------------------
    def canary(self) -> Canary:
        return Canary(query=self.canary_query, book_id=self.canary_book_id,
                      digest=self.canary_digest)

    @property
    def local_services(self) -> bool:
        return not self.services

    def service_urls(self) -> dict[str, str]:
        """Version name -> base URL, in priority order."""
        if self.services:
            return dict(self.services)
        return {v: f"http://127.0.0.1:{p}"
                for v, p in zip(VERSIONS, self.service_ports, strict=True)}

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'monitor.db'}"

    def lease_renew_s(self) -> float:
        """Seconds between lease renewals (and takeover attempts of followers)."""
        return self.lease_renew or self.lease_ttl / 3

    @property
    def shared_database(self) -> bool:
        """PostgreSQL: several monitors may share it, one leading by the lease."""
        return self.db_url().startswith("postgresql")

    def dashboard_url(self) -> str:
        scheme = "https" if self.tls_certfile else "http"
        return self.public_url or f"{scheme}://{self.host}:{self.port}"

    def host_names(self) -> list[str]:
        """Host header values the dashboard answers (DNS-rebinding defence): the configured
        list, else the bound address, loopback names on a loopback bind, and the public URL's
        host."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        names = [] if self.host in ("0.0.0.0", "::") else [self.host.lower()]  # noqa: S104
        if is_loopback(self.host):
            names += ["127.0.0.1", "localhost", "::1", "[::1]"]
        public = urlsplit(self.public_url).hostname if self.public_url else None
        if public:
            names.append(public.lower())
        return list(dict.fromkeys(names))

    def smtp_recipients(self) -> list[str]:
        return list(self.smtp_to)


class ConfigError(Exception):
    """A setting is wrong; the message names it."""


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning pydantic's error into one line per bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        name = f"MONITOR_{field.upper()}: " if field else ""
        lines.append(f"bad setting {name}{message}")
    return "; ".join(lines)


def unknown_names(environ: Mapping[str, str], env_file: Path | None = Path(".env")) -> list[str]:
    """One line per MONITOR_* name in the environment or `env_file` that no setting reads
    (a typo is otherwise silently ignored), with the closest known name when there is one."""
    known = {f"MONITOR_{name.upper()}" for name in Settings.model_fields} | OTHER_NAMES
    names = {n.upper() for n in environ if n.upper().startswith("MONITOR_")}
    if env_file is not None and env_file.is_file():
        names |= {n.upper() for n in dotenv_values(env_file) if n.upper().startswith("MONITOR_")}
    lines = []
    for name in sorted(names - known):
        suffixes = sorted(k.removeprefix("MONITOR_") for k in known)
        close = difflib.get_close_matches(name.removeprefix("MONITOR_"), suffixes, n=1,
                                          cutoff=0.75)
        hint = f" (did you mean MONITOR_{close[0]}?)" if close else ""
        lines.append(f"unknown setting {name}{hint}")
    return lines
