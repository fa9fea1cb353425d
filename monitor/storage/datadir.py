"""The data directory: private file modes and one monitor at a time.

`private_files()` sets umask 077 so the database, its WAL, checkpoints, backups and logs are
created readable by the owner only. `DataDirLock` holds an exclusive `flock` on
`<data dir>/monitor.lock` for the life of the process (the kernel drops it when the process
dies, however it dies), and writes the holder's PID into the file, so a second monitor on the
same directory exits with one line naming the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "monitor.lock"
PRIVATE_UMASK = 0o077


def private_files() -> int:
    """Make every file this process creates private to its owner; returns the old umask."""
    return os.umask(PRIVATE_UMASK)


class DataDirBusy(Exception):
    """Another live process holds the data directory's lock."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        """Take the lock or raise DataDirBusy naming the holder's PID."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"PID {holder}" if holder else "another process"
            raise DataDirBusy(f"error: another monitor ({who}) is using the data dir "
                              f"{self.path.parent.resolve()}; stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def fsync_dir(directory: Path) -> None:
    """Make a file's creation or rename durable (the directory entry), on POSIX."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def group_or_world_readable(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o077)
