"""A private PostgreSQL 15 cluster for tests: initdb into a temporary directory as the
`postgres` user, a free port, the socket inside the directory, stopped (by PID) at the end.

Without Debian's PostgreSQL the tests that need it are skipped with a reason, unless
MONITOR_REQUIRE_POSTGRES=1 (CI), when the missing server is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from monitor.storage.store import Store

def _pg_bin() -> Path:
    """MONITOR_PG_BIN, else Debian's newest /usr/lib/postgresql/N/bin (15 on this machine)."""
    if configured := os.environ.get("MONITOR_PG_BIN"):
        return Path(configured)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
START_TIMEOUT_S = 30.0


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "postgres").exists():
        return f"PostgreSQL 15 not installed (no {PG_BIN}/initdb; apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run initdb as"
    return None


def require_postgres() -> None:
    """Skip (or, with MONITOR_REQUIRE_POSTGRES=1, fail) when no cluster can be started."""
    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get("MONITOR_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"MONITOR_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL over TCP on loopback (trust authentication inside the temp cluster)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def psql_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of `template`); returns its name."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.psql_url(), autocommit=True) as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{clause}")  # noqa: S608 - generated name
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _as_postgres() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def start_cluster() -> Cluster:
    """initdb + postgres on a free port; waits until it accepts connections."""
    directory = Path(tempfile.mkdtemp(prefix="monitor-pg-"))
    data = directory / "data"
    owner = _as_postgres()
    if owner:
        os.chown(directory, int(str(owner["user"])), int(str(owner["group"])))
    subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True,
                   **owner)  # type: ignore[call-overload]
    port = free_port()
    log = open(directory / "postgres.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(directory),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
         "-c", "shared_buffers=32MB"],
        stdout=log, stderr=subprocess.STDOUT, **owner)  # type: ignore[call-overload]
    cluster = Cluster(directory, port, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    import psycopg

    while True:
        try:
            with psycopg.connect(cluster.psql_url(), connect_timeout=2):
                return cluster
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                cluster.stop()
                raise RuntimeError(
                    f"PostgreSQL did not start: {(directory / 'postgres.log').read_text()[-2000:]}"
                ) from None
            time.sleep(0.1)


_templates: dict[int, str] = {}


def migrated_database(cluster: Cluster) -> str:
    """A fresh database at the newest migration (copied from a template migrated once)."""
    from monitor.storage.store import Store

    template = _templates.get(cluster.port)
    if template is None:
        template = cluster.create_database()
        store = Store(cluster.url(template))
        store.create_all()
        store.dispose()
        _templates[cluster.port] = template
    return cluster.create_database(template=template)


def backend_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The store fixture's body for `params=BACKENDS`: SQLite in tmp_path, or a fresh database
    on the session's private PostgreSQL cluster."""
    from monitor.storage.store import Store

    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        store = Store(cluster.url(migrated_database(cluster)))
    else:
        store = Store(f"sqlite:///{tmp_path}/m.db")
        store.create_all()
    yield store
    store.dispose()


def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """For `params=BACKENDS`: the URL of an empty database (no schema): a SQLite file in
    tmp_path, or a fresh database on the session's private PostgreSQL cluster."""
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        return cluster.url(cluster.create_database())
    return f"sqlite:///{tmp_path}/empty.db"


BACKENDS = ["sqlite", "postgres"]
