"""Two real monitors on one private PostgreSQL, three real services and a real SMTP server.

Used by tests/e2e/test_ha_*.py and bench/takeover.py. Each monitor connects with its own
`PGAPPNAME`, and a trigger (installed in the test database only) logs which monitor wrote
every row of the acting tables, so "the old leader wrote nothing" is read from the database
itself rather than inferred.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

from tests.e2e.monitor_proc import MonitorProcess, all_versions_up, free_ports, start_monitor
from tests.e2e.procs import start_service, stop_process
from tests.notices.test_smtp import Inbox, smtp_server
from tests.storage.postgres import Cluster, migrated_database

TOKEN = "e2e-ha-chaos-token-0123456789abcdef-xyz"
SECRET = "e2e-ha-shared-secret-Qm7Zt2Lp9Xw4Rv8N"
ACTING_TABLES = ("audit", "monitor_state", "probe", "notice", "incident", "operator_command")
WRITE_LOG = """
CREATE TABLE write_log (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp(),
                        app text, tbl text, op text);
CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO write_log (app, tbl, op)
  VALUES (current_setting('application_name'), TG_TABLE_NAME, TG_OP);
  RETURN NULL;
END $$;
"""


@dataclass
class HaSystem:
    cluster: Cluster
    database: str
    services: dict[str, str]
    inbox: Inbox
    smtp_port: int
    root: Path
    ttl: float
    monitors: dict[str, MonitorProcess] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cluster.url(self.database)

    def sql(self, query: str, *args: object) -> list[tuple]:
        with psycopg.connect(self.cluster.psql_url(self.database), autocommit=True) as conn:
            cursor = conn.execute(query, args)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def install_write_log(self) -> None:
        with psycopg.connect(self.cluster.psql_url(self.database), autocommit=True) as conn:
            conn.execute(WRITE_LOG)
            for table in ACTING_TABLES:
                conn.execute(f"CREATE TRIGGER log_{table} AFTER INSERT OR UPDATE OR DELETE "
                             f"ON {table} FOR EACH ROW EXECUTE FUNCTION log_write()")

    def start(self, name: str, **extra: str) -> MonitorProcess:
        """Start monitor `name` (its PGAPPNAME) and wait until it answers /readyz."""
        env = {"MONITOR_DATABASE_URL": self.url, "MONITOR_SECRET_KEY": SECRET,
               "MONITOR_CHAOS_TOKEN": TOKEN, "MONITOR_LEASE_TTL": str(self.ttl),
               "MONITOR_SMTP_HOST": "127.0.0.1", "MONITOR_SMTP_PORT": str(self.smtp_port),
               "MONITOR_SMTP_MODE": "plain", "MONITOR_SMTP_FROM": "monitor@example.test",
               "MONITOR_SMTP_TO": "oncall@example.test", "MONITOR_SMTP_TIMEOUT": "2",
               "MONITOR_NOTIFY_GROUP_WINDOW": "1", "PGAPPNAME": f"monitor-{name}", **extra}
        monitor = start_monitor(self.root / f"{name}-{self.database}", services=self.services,
                                **env)
        self.monitors[name] = monitor
        return monitor

    def leader(self) -> str | None:
        """The PGAPPNAME-style name of the monitor that says it leads, or None."""
        for name, monitor in self.monitors.items():
            if monitor.proc.poll() is not None:
                continue
            try:
                leader = monitor.status().get("leader") or {}
            except (httpx.HTTPError, ValueError):
                continue  # stopped (SIGSTOP) or shutting down
            if leader.get("self"):
                return name
        return None

    def wait_leader(self, timeout: float, *, other_than: str | None = None) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            name = self.leader_from_db()
            if name is not None and name != other_than:
                return name
            time.sleep(0.05)
        raise AssertionError(f"no leader (other than {other_than}) within {timeout}s")

    def leader_from_db(self) -> str | None:
        """Which monitor holds an unexpired lease, by the database clock."""
        rows = self.sql("SELECT holder FROM monitor_lease WHERE id = 1 AND NOT released "
                        "AND expires_at > clock_timestamp()")
        if not rows or rows[0][0] is None:
            return None
        for name, monitor in self.monitors.items():
            if rows[0][0].split(":")[1] == str(monitor.port):
                return name
        return None

    def db_now(self) -> datetime:
        return self.sql("SELECT clock_timestamp()")[0][0]

    def actions(self, action: str) -> list[dict]:
        rows = self.sql("SELECT seq, actor, target, params, request_id, reason FROM audit "
                        "WHERE action = %s ORDER BY seq", action)
        return [{"seq": s, "actor": a, "target": t, "params": json.loads(p), "request_id": r,
                 "reason": why} for s, a, t, p, r, why in rows]

    def writes_by(self, name: str, since: datetime) -> list[tuple]:
        return self.sql("SELECT at, tbl, op FROM write_log WHERE app = %s AND at > %s "
                        "ORDER BY id", f"monitor-{name}", since)

    def crash(self, version: str) -> None:
        self.chaos(version, "crash")

    def chaos(self, version: str, fault: str, body: dict | None = None) -> None:
        """Inject a fault straight at a service (as a game-day script would)."""
        try:
            httpx.post(f"{self.services[version]}/chaos/{fault}", json=body or {}, timeout=2.0,
                       headers={"Authorization": f"Bearer {TOKEN}"})
        except httpx.HTTPError:
            pass  # a crash closes the connection before answering

    def wait_mail(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.inbox.messages) < count:
            time.sleep(0.05)

    def verify_audit(self, name: str) -> tuple[int, str]:
        result = self.monitors[name].cli("audit", "verify")
        return result.returncode, result.stdout + result.stderr


    def start_pair(self, *, write_log: bool = True) -> None:
        """A fresh database; monitor `a` started first (it leads), then `b` (it follows)."""
        self.stop_monitors()
        self.database = migrated_database(self.cluster)
        if write_log:
            self.install_write_log()
        self.start("a")
        self.wait_leader(timeout=30)
        self.start("b")
        self.monitors["a"].wait_for(all_versions_up, timeout=30)

    def stop_monitors(self) -> None:
        for monitor in self.monitors.values():
            monitor.stop(signal.SIGKILL)  # also the gateway a killed monitor left running
        self.monitors.clear()


def wait(check: Callable[[], object], timeout: float, every: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s")


@contextmanager
def ha_system(cluster: Cluster, root: Path, *, ttl: float = 2.0) -> Iterator[HaSystem]:
    """Three services and an SMTP server; `start_pair()` adds a database and two monitors."""
    with ExitStack() as stack:
        ports = dict(zip(("v1", "v2", "v3"), free_ports(3), strict=True))
        procs = {v: start_service(v, p, TOKEN) for v, p in ports.items()}
        stack.callback(lambda: [stop_process(p) for p in procs.values()])
        inbox = Inbox()
        smtp_port = stack.enter_context(smtp_server(inbox))
        system = HaSystem(cluster, "", {v: f"http://127.0.0.1:{p}" for v, p in ports.items()},
                          inbox, smtp_port, root, ttl)
        stack.callback(system.stop_monitors)
        yield system
