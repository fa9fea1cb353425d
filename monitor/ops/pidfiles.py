"""Pid files of supervised children, so a restarted monitor adopts what a dead one started.

Like containerd's shims, the children of ``monitor run`` (the gateway and the local book
services) are started in their own session and without a parent-death signal when a pid
directory is given: a monitor killed by SIGKILL leaves them serving. Each child has
``<pid_dir>/<name>.pid`` holding its pid, its start time (psutil's ``create_time``) and its
argv. A later monitor adopts a child only when a process with that pid still runs, started
at that time (pid reuse) and with that argv (same settings); a child of ours with another
argv is stopped and started afresh. A clean stop removes the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import psutil

POLL_S = 0.2


@dataclass(frozen=True)
class PidRecord:
    pid: int
    started: float
    argv: list[str]


def path_of(pid_dir: Path, name: str) -> Path:
    return pid_dir / f"{name}.pid"


def write(pid_dir: Path, name: str, pid: int, argv: list[str]) -> None:
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        return  # already gone: nothing to adopt later
    pid_dir.mkdir(parents=True, exist_ok=True)
    path = path_of(pid_dir, name)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": pid, "started": started, "argv": argv}))
    os.replace(tmp, path)


def remove(pid_dir: Path, name: str) -> None:
    path_of(pid_dir, name).unlink(missing_ok=True)


def read(pid_dir: Path, name: str) -> PidRecord | None:
    try:
        doc = json.loads(path_of(pid_dir, name).read_text())
        return PidRecord(int(doc["pid"]), float(doc["started"]), [str(a) for a in doc["argv"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ours(record: PidRecord) -> bool:
    """The recorded process still runs (same pid, same start time, not a zombie)."""
    try:
        proc = psutil.Process(record.pid)
        return bool(proc.create_time() == record.started and
                    proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def adoptable(pid_dir: Path, name: str, argv: list[str]) -> int | None:
    """The pid of a running child ``name`` started with ``argv``; stops one of ours started
    with another argv, forgets a stale file."""
    record = read(pid_dir, name)
    if record is None:
        return None
    if not ours(record):
        remove(pid_dir, name)
        return None
    if record.argv != argv:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
        remove(pid_dir, name)
        return None
    return record.pid


def held(pid_dir: Path, names: list[str]) -> set[str]:
    """Which of ``names`` have a live recorded child (their ports are theirs, not free)."""
    return {n for n in names if (r := read(pid_dir, n)) is not None and ours(r)}


async def wait_exit(pid: int) -> None:
    """Until the process ``pid`` (not our child) exits: a pidfd when the kernel has them."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while _alive(pid):
            await asyncio.sleep(POLL_S)
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, exited)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
