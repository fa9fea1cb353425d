"""Replica processes: their argv, their template, and the ones a previous monitor left running.

The controller starts every replica in its own session with a pid file in
``<data dir>/run/replicas/<replica id>.pid`` (see `monitor.ops.pidfiles`), so a monitor that
crashes (SIGKILL, OOM) leaves its replicas serving. The next monitor, or this one when it
becomes the leader again, adopts each replica whose process still runs with the recorded
start time: same id, port and argv. Its template is read back from that argv, so a replica
of a command that changed meanwhile is then replaced by the reconciler's rolling rules (an
env change made while no monitor ran is not seen: env is not in the pid file). A clean stop
removes the files; a file whose process is gone is forgotten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from monitor.ops import pidfiles


def free_port() -> int:
    """A port the kernel just handed out on loopback (free at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command_argv(command: Iterable[str]) -> list[str]:
    """The spec's command, with a bare `python` meaning this interpreter (its venv)."""
    argv = list(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


ADDRESS_ARGS = 4  # every replica's argv ends with --host 127.0.0.1 --port N


@dataclass(frozen=True)
class Leftover:
    """A running replica process that a previous monitor started."""

    id: str
    version: str
    port: int
    argv: list[str]
    serial: int


def template(command: Iterable[str], env: Mapping[str, str]) -> str:
    """What makes two replicas of a version the same: their command and their env."""
    text = json.dumps([list(command), sorted(env.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def address_argv(command: list[str], port: int) -> list[str]:
    return [*command, "--host", "127.0.0.1", "--port", str(port)]


def command_of(argv: list[str]) -> list[str]:
    return argv[:-ADDRESS_ARGS]


def cpu_since(meter: psutil.Process | None, pid: int | None
              ) -> tuple[psutil.Process | None, float | None]:
    """CPU % of process `pid` since the previous reading with `meter` (None on the first look,
    after a restart, or when it is gone); returns the meter to keep for the next reading."""
    try:
        if meter is None or meter.pid != pid:
            meter = psutil.Process(pid) if pid else None
            if meter is not None:
                meter.cpu_percent(None)
            return meter, None
        return meter, float(meter.cpu_percent(None))
    except psutil.Error:
        return None, None


def leftovers(pid_dir: Path) -> list[Leftover]:
    """The replicas recorded in `pid_dir` whose process still runs, oldest id first; stale
    and unreadable files are removed."""
    found = []
    for path in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        rid = path.name.removesuffix(".pid")
        record = pidfiles.read(pid_dir, rid)
        parsed = _parse(rid, record.argv) if record is not None else None
        if record is None or parsed is None or not pidfiles.ours(record):
            pidfiles.remove(pid_dir, rid)
            continue
        version, serial, port = parsed
        found.append(Leftover(rid, version, port, record.argv, serial))
    return sorted(found, key=lambda f: f.serial)


def stop_leftovers(pid_dir: Path) -> list[str]:
    """SIGTERM the process groups of the replicas left in `pid_dir` and forget them (a
    follower runs no replicas); returns their ids."""
    stopped = []
    for found in leftovers(pid_dir):
        record = pidfiles.read(pid_dir, found.id)
        if record is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGTERM)
        pidfiles.remove(pid_dir, found.id)
        stopped.append(found.id)
    return stopped


def _parse(rid: str, argv: list[str]) -> tuple[str, int, int] | None:
    version, _, serial = rid.rpartition("-")
    if (not version or not serial.isdigit() or len(argv) <= ADDRESS_ARGS
            or argv[-ADDRESS_ARGS:-1] != ["--host", "127.0.0.1", "--port"]
            or not argv[-1].isdigit()):
        return None
    return version, int(serial), int(argv[-1])
