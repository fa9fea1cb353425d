"""Settings: MONITOR_* environment variables and `.env`, validated loudly at start."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VERSIONS = ("v1", "v2", "v3")
SMTP_MODES = ("ssl", "starttls", "plain")
DATABASE_SCHEMES = ("sqlite:///", "postgresql+psycopg://")


class Settings(BaseSettings):
    """Every knob of the monitor. See `.env.example` for one line per field."""

    model_config = SettingsConfigDict(
        env_prefix="MONITOR_", env_file=".env", extra="ignore", validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    gateway_port: int = Field(8080, ge=1, le=65535)
    data_dir: Path = Path("./data")
    database_url: str = ""
    services: str = ""
    service_ports: str = "8001,8002,8003"

    interval: float = Field(2.0, gt=0, le=3600)
    fast_interval: float = Field(1.0, gt=0, le=3600)
    down_interval: float = Field(5.0, gt=0, le=3600)
    timeout: float = Field(1.0, gt=0, le=600)
    slow_ms: float = Field(0.0, ge=0)
    fall: int = Field(3, ge=1, le=100)
    rise: int = Field(2, ge=1, le=100)
    cooldown: float = Field(15.0, ge=0, le=86400)
    startup_grace: float = Field(10.0, ge=0, le=3600)
    auto_failback_after: float = Field(0.0, ge=0, le=86400)
    retention_hours: float = Field(24.0, gt=0, le=24 * 365)
    restart_delay: float = Field(5.0, ge=0, le=300)
    lease_ttl: float = Field(5.0, ge=1.0, le=300)
    lease_renew: float = Field(0.0, ge=0, le=150)  # 0 = lease_ttl / 3

    secret_key: SecretStr | None = None
    chaos_token: SecretStr | None = None
    admin_password: SecretStr | None = None
    scrape_token: SecretStr | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    public_url: str = ""
    trusted_proxies: str = ""

    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_mode: str = "starttls"
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    smtp_from: str = ""
    smtp_to: str = ""
    smtp_timeout: float = Field(10.0, gt=0, le=300)
    smtp_cafile: Path | None = None
    notify_remind_every: float = Field(1800.0, ge=0)
    notify_give_up_after: float = Field(86400.0, gt=0)
    notify_group_window: float = Field(5.0, ge=0, le=600)

    @field_validator("smtp_mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        if value not in SMTP_MODES:
            raise ValueError(f"must be one of {', '.join(SMTP_MODES)}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        for address in filter(None, (a.strip() for a in value.split(","))):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(DATABASE_SCHEMES):
            raise ValueError(f"expected a URL starting with {' or '.join(DATABASE_SCHEMES)}")
        return value

    @field_validator("services")
    @classmethod
    def _service_urls(cls, value: str) -> str:
        parse_services(value)
        return value

    @field_validator("service_ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        parse_ports(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.timeout >= self.interval:
            raise ValueError(
                f"MONITOR_TIMEOUT ({self.timeout}) must be below MONITOR_INTERVAL ({self.interval})"
            )
        if self.fast_interval > self.interval:
            raise ValueError("MONITOR_FAST_INTERVAL must not exceed MONITOR_INTERVAL")
        if self.smtp_mode == "plain" and self.smtp_host and not _is_loopback(self.smtp_host):
            raise ValueError("MONITOR_SMTP_MODE=plain is allowed only for a loopback SMTP host")
        if self.smtp_host and (not self.smtp_from or not self.smtp_to):
            raise ValueError("MONITOR_SMTP_FROM and MONITOR_SMTP_TO are required with SMTP_HOST")
        if self.lease_renew > self.lease_ttl / 2:
            raise ValueError(f"MONITOR_LEASE_RENEW ({self.lease_renew}) must be at most half "
                             f"of MONITOR_LEASE_TTL ({self.lease_ttl})")
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("MONITOR_TLS_CERTFILE and MONITOR_TLS_KEYFILE go together")
        ports = [self.port, self.gateway_port]
        if not self.services:
            ports += parse_ports(self.service_ports)
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports must all differ, got {ports}")
        return self

    # Derived values -----------------------------------------------------------------------
    @property
    def local_services(self) -> bool:
        return not self.services

    def service_urls(self) -> dict[str, str]:
        """Version name -> base URL, in priority order."""
        if self.services:
            return parse_services(self.services)
        ports = parse_ports(self.service_ports)
        return {v: f"http://127.0.0.1:{p}" for v, p in zip(VERSIONS, ports, strict=True)}

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

    def smtp_recipients(self) -> list[str]:
        return [r.strip() for r in self.smtp_to.split(",") if r.strip()]


def parse_ports(value: str) -> list[int]:
    try:
        ports = [int(p) for p in value.split(",")]
    except ValueError:
        raise ValueError(f"expected three comma-separated port numbers, got {value!r}") from None
    if len(ports) != 3 or not all(1 <= p <= 65535 for p in ports):
        raise ValueError(f"expected three ports between 1 and 65535, got {value!r}")
    return ports


def parse_services(value: str) -> dict[str, str]:
    """`v1=URL,v2=URL,v3=URL` in priority order; empty means spawn local services."""
    if not value.strip():
        return {}
    urls: dict[str, str] = {}
    for part in value.split(","):
        name, sep, url = part.strip().partition("=")
        parts = urlsplit(url.strip())
        if not sep or not name.strip() or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected NAME=http(s)://host:port, got {part.strip()!r}")
        urls[name.strip()] = url.strip().rstrip("/")
    if len(urls) < 2:
        raise ValueError("at least two versions are needed to fail over")
    return urls


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class ConfigError(Exception):
    """A setting is wrong; the message names it."""


def load_settings(**overrides) -> Settings:
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
