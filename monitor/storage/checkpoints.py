"""Audit checkpoints: the chain's head (seq, mac) written outside the database, so a deleted
tail of the audit table is caught.

One JSON line per checkpoint, appended and fsynced: `{"n", "seq", "mac", "at", "prev", "sig"}`
with `n` the line's number, `prev` the previous line's `sig` (GENESIS for the first) and `sig`
= HMAC(audit key, the line without `sig`). Lines therefore form a chain of their own: removing,
inserting or reordering lines breaks it. The number of lines written and the last `sig` are
also kept in the database (`audit_anchor`, MAC'd), so a missing or shortened file is tampering
once a checkpoint was written. A second sink (`HttpSink`, MONITOR_AUDIT_CHECKPOINT_URL) receives
every line too, so an attacker with the host's disk cannot quietly rewrite both.

Lines written before lines were chained (no `n`) are still read: their signature is checked,
and the chain starts after them.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import col, select

from monitor.storage.datadir import fsync_dir
from monitor.storage.store import AuditAnchor, AuditRow, Store

log = logging.getLogger("monitor.storage.checkpoints")
GENESIS = "0" * 64
MAX_UNSENT = 10_000
_path_locks: dict[Path, threading.Lock] = collections.defaultdict(threading.Lock)


def sign_line(key: bytes, entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "sig"}
    return hmac.new(key, json.dumps(body, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def anchor_mac(key: bytes, lines: int, last_sig: str) -> str:
    return hmac.new(key, f"anchor\0{lines}\0{last_sig}".encode(), hashlib.sha256).hexdigest()


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class HttpSink:
    """POSTs each checkpoint line as JSON to a collector. A line that cannot be sent is kept
    (up to MAX_UNSENT) and sent, in order, before the next one."""

    def __init__(self, url: str, *, timeout: float = 2.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url
        self.client = httpx.Client(timeout=timeout, transport=transport)
        self.unsent: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_UNSENT)
        self._lock = threading.Lock()

    def send(self, entry: dict[str, Any]) -> bool:
        """True when every line so far has reached the sink."""
        with self._lock:
            self.unsent.append(entry)
            while self.unsent:
                try:
                    self.client.post(self.url, json=self.unsent[0]).raise_for_status()
                except httpx.HTTPError as exc:
                    log.warning("audit checkpoint sink %s refused (%s); %d line(s) kept",
                                self.url, exc, len(self.unsent))
                    return False
                self.unsent.popleft()
            return True

    def close(self) -> None:
        self.client.close()


def write_checkpoint(store: Store, key: bytes, path: Path, *, now: float,
                     sink: HttpSink | None = None) -> dict[str, Any] | None:
    """Append the head (seq, mac) as the next chained line, fsync it, record it in the anchor
    and send it to the sink. None when the log is empty. Thread-safe per file."""
    with _path_locks[path]:
        with store.read() as session:
            newest = select(AuditRow).order_by(col(AuditRow.seq).desc()).limit(1)
            head = session.exec(newest).first()
        if head is None:
            return None
        number, prev = _last_line(path)
        entry: dict[str, Any] = {"n": number + 1, "seq": head.seq, "mac": head.mac,
                                 "at": _iso(now), "prev": prev}
        entry["sig"] = sign_line(key, entry)
        created = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_dir(path.parent)
        record_anchor(store, key, entry["n"], entry["sig"], anchor_id(store, path))
    if sink is not None:
        sink.send(entry)
    return entry


def anchor_id(store: Store, path: Path) -> int:
    """Row of `audit_anchor` for the file at `path`: 1 with SQLite (one monitor); with a
    shared database each monitor's file (host and path) has its own row."""
    if store.is_sqlite:
        return 1
    where = f"{socket.gethostname()}:{path.resolve()}".encode()
    return 2 + zlib.crc32(where) % 2_000_000_000


def record_anchor(store: Store, key: bytes, lines: int, last_sig: str, row: int) -> None:
    try:
        with store.write() as session:
            anchor = session.get(AuditAnchor, row) or AuditAnchor(id=row)
            anchor.lines, anchor.last_sig = lines, last_sig
            anchor.mac = anchor_mac(key, lines, last_sig)
            session.add(anchor)
    except Exception:  # noqa: BLE001 - a lagging anchor only weakens the check, never fails it
        log.warning("could not record the checkpoint anchor (database busy?)", exc_info=True)


def _last_line(path: Path) -> tuple[int, str]:
    """(number, sig) of the file's last line; (0, GENESIS) without one."""
    if not path.exists() or path.stat().st_size == 0:
        return 0, GENESIS
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        tail = handle.read().decode("utf-8", "replace").splitlines()
    try:
        last = json.loads(tail[-1])
        if isinstance(last.get("n"), int):
            return last["n"], str(last["sig"])
        sig = str(last["sig"])
    except (ValueError, KeyError, IndexError, AttributeError):
        sig = GENESIS
    with open(path, encoding="utf-8", errors="replace") as handle:
        return sum(1 for _ in handle), sig


@dataclass
class Checkpoints:
    """What the checkpoint file (and its anchor) says, and what is wrong with it."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_checkpoints(key: bytes, path: Path, store: Store | None = None) -> Checkpoints:
    """Valid entries and problems: a forged or garbled line, a broken line chain, and (with
    `store`) a file missing or shorter than the anchor says was written."""
    result = Checkpoints()
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    prev = GENESIS
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            if not hmac.compare_digest(str(entry.pop("sig")).encode(),
                                       sign_line(key, entry).encode()):
                raise ValueError("bad signature")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            result.problems.append(f"checkpoint line {number}: {exc}")
            prev = raw_sig(line)
            continue
        if "n" in entry and (entry["n"] != number or entry["prev"] != prev):
            result.problems.append(f"checkpoint line {number}: does not follow line "
                                   f"{number - 1} (lines removed, inserted or reordered)")
        result.entries.append(entry)
        prev = sign_line(key, entry)
    if store is not None:
        result.problems += _anchor_problems(key, store, lines, path)
    return result


def raw_sig(line: str) -> str:
    try:
        return str(json.loads(line)["sig"])
    except (ValueError, KeyError, TypeError):
        return GENESIS


def _anchor_problems(key: bytes, store: Store, lines: list[str], path: Path) -> list[str]:
    with store.read() as session:
        anchor = session.get(AuditAnchor, anchor_id(store, path))
    if anchor is None:
        chained = any('"n":' in line for line in lines)
        return [f"{path.name}: its anchor row was deleted"] if chained else []
    if not hmac.compare_digest(anchor.mac.encode(),
                               anchor_mac(key, anchor.lines, anchor.last_sig).encode()):
        return [f"{path.name}: its anchor row was altered"]
    if anchor.lines == 0:
        return []
    if len(lines) < anchor.lines:
        state = "is missing" if not lines else f"has {len(lines)} lines"
        return [f"{path.name} {state}, but {anchor.lines} checkpoint(s) were written: "
                "deleted or shortened"]
    if raw_sig(lines[anchor.lines - 1]) != anchor.last_sig:
        return [f"checkpoint line {anchor.lines}: not the line that was written"]
    return []


def sink_for(url: str) -> HttpSink | None:
    return HttpSink(url) if url else None


def match_backup(live: Path, copy: Path, backup_db: Path) -> int | None:
    """Make a backup's checkpoint copy hold exactly the lines its database's anchor counts.

    The live file only grows, so its first `anchor.lines` lines are the ones written before the
    database copy was taken: a restore then neither names rows the copy lacks nor looks
    shortened. Returns the number of lines kept; None for a database without an anchor (the
    copy taken before the database is kept as it is)."""
    import sqlite3

    connection = sqlite3.connect(f"file:{backup_db}?mode=ro", uri=True)
    try:
        row = connection.execute("SELECT lines FROM audit_anchor WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # no anchor table: a database from before anchors
        row = None
    finally:
        connection.close()
    if row is None:
        return None
    lines = live.read_text(encoding="utf-8").splitlines(keepends=True)[: int(row[0])]
    copy.write_text("".join(lines), encoding="utf-8")
    return len(lines)
