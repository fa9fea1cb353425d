"""Checks of the machine before `run` and for `check-config`: one readable line per problem.

Settings validation (config.py) says whether the values make sense; preflight says whether
this machine can honour them: the data directory is writable, the ports are free, the TLS
files load, the SMTP server answers. SMTP is checked only for `check-config` (`for_run=False`):
a mail server being down must never keep the monitor from failing over.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import tempfile
from pathlib import Path

from monitor.config import VERSIONS, Settings

SMTP_CHECK_TIMEOUT = 5.0


def port_problem(host: str, port: int, setting_name: str) -> str | None:
    """None when `host:port` can be bound now (the way uvicorn binds), else one line."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"{setting_name}: cannot resolve {host!r} ({exc.strerror})"
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        return f"{setting_name}: {where} {_bind_error(exc)}"
    finally:
        sock.close()
    return None


def _bind_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "is already in use"
    if exc.errno == errno.EACCES:
        return "needs privileges (use a port above 1023)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "is not an address of this machine"
    return f"cannot be bound ({exc.strerror or exc})"


def check(settings: Settings, *, for_run: bool, held: frozenset[str] = frozenset()) -> list[str]:
    """Human-readable problems, empty when the monitor can start with these settings.
    ``held`` names children (gateway, v1..) still running from an earlier monitor, to be
    adopted: their ports are theirs."""
    problems = [*data_dir_problems(settings), *port_problems(settings, held),
                *tls_problems(settings)]
    if not for_run:
        problem = smtp_problem(settings)
        if problem:
            problems.append(problem)
    return problems


def data_dir_problems(settings: Settings) -> list[str]:
    path = settings.data_dir
    if path.exists():
        if not path.is_dir():
            return [f"MONITOR_DATA_DIR: {path} is not a directory"]
        problem = _write_problem(path)
        if problem:
            return [f"MONITOR_DATA_DIR: {path} is not writable ({problem})"]
        return _database_problems(settings)
    parent = _existing_ancestor(path)
    if not parent.is_dir():
        return [f"MONITOR_DATA_DIR: {path} cannot be created ({parent} is not a directory)"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"MONITOR_DATA_DIR: {path} cannot be created ({parent} is not writable)"]
    return []


def _database_problems(settings: Settings) -> list[str]:
    url = settings.db_url()
    if url.startswith("postgresql"):
        return _postgres_problems(url)
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return []
    db = Path(url.removeprefix("sqlite:///"))
    for file in (db, db.with_name(db.name + "-wal")):
        if file.exists() and not os.access(file, os.R_OK | os.W_OK):
            return [f"MONITOR_DATABASE_URL: {file} is not readable and writable"]
    return []


def _postgres_problems(url: str) -> list[str]:
    """One line when the shared database cannot be reached (the URL's password not shown)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return [f"MONITOR_DATABASE_URL: cannot connect to PostgreSQL ({reason})"]
    finally:
        engine.dispose()
    return []


def _write_problem(directory: Path) -> str | None:
    """Actually write a file: os.access alone misses read-only mounts and lies to root."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".preflight-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def port_problems(settings: Settings, held: frozenset[str] = frozenset()) -> list[str]:
    wanted = [(settings.host, settings.port, "MONITOR_PORT")]
    if settings.spawn_gateway and settings.dataplane == "embedded" and "gateway" not in held:
        wanted.append((settings.host, settings.gateway_port, "MONITOR_GATEWAY_PORT"))
    if settings.local_services:
        for version, port in zip(VERSIONS, settings.service_ports, strict=True):
            if version not in held:
                wanted.append(("127.0.0.1", port, f"MONITOR_SERVICE_PORTS ({version})"))
    return [p for host, port, name in wanted if (p := port_problem(host, port, name))]


def tls_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    files = [(settings.tls_certfile, "MONITOR_TLS_CERTFILE"),
             (settings.tls_keyfile, "MONITOR_TLS_KEYFILE"),
             (settings.smtp_cafile, "MONITOR_SMTP_CAFILE")]
    for path, name in files:
        if path is not None and (problem := _read_problem(path)):
            problems.append(f"{name}: {path} {problem}")
    if settings.tls_certfile and settings.tls_keyfile and not any(
            p.startswith("MONITOR_TLS_") for p in problems):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(settings.tls_certfile, settings.tls_keyfile)
        except (ssl.SSLError, OSError) as exc:
            problems.append("MONITOR_TLS_CERTFILE/MONITOR_TLS_KEYFILE: cannot load the "
                            f"certificate with its key ({exc.__class__.__name__}: {exc})")
    if settings.smtp_cafile and not any(p.startswith("MONITOR_SMTP_CAFILE") for p in problems):
        try:
            ssl.create_default_context(cafile=str(settings.smtp_cafile))
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"MONITOR_SMTP_CAFILE: {settings.smtp_cafile} holds no usable CA "
                            f"certificate ({exc})")
    return problems


def _read_problem(path: Path) -> str | None:
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return f"is not readable ({exc.strerror or exc})"
    return None


def smtp_problem(settings: Settings, timeout: float = SMTP_CHECK_TIMEOUT) -> str | None:
    """A TCP connect to the SMTP server; None when SMTP is not configured or it answers."""
    if not settings.smtp_host:
        return None
    address = (settings.smtp_host, settings.smtp_port)
    try:
        with socket.create_connection(address, timeout=min(timeout, settings.smtp_timeout)):
            return None
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return (f"MONITOR_SMTP_HOST: cannot connect to {settings.smtp_host}:"
                f"{settings.smtp_port} ({reason})")
