"""The tamper-evident audit log: an HMAC chain over rows, checkpoints, and verification.

Each row stores `seq`, `prev_mac` and `mac = HMAC-SHA256(audit_key, canonical JSON of the row
including seq and prev_mac)`. Appends run inside the caller's write transaction (`BEGIN
IMMEDIATE`), so the row lands atomically with the action it records and two writers can never
fork the chain (on PostgreSQL, `pg_advisory_xact_lock(AUDIT_LOCK)` serialises appends across
monitors until the transaction ends). Checkpoints of (seq, head mac) are kept in a file outside
the database so a deleted tail is caught too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, select

from monitor.storage.store import AuditRow, Store

GENESIS = "0" * 64
CHAINED = ("seq", "ts", "actor", "role", "source_ip", "user_agent", "action", "target", "params",
           "outcome", "reason", "request_id", "evidence", "prev_mac")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_FIELD = 2000
AUDIT_LOCK = 0x61756474  # PostgreSQL advisory lock key of the chain head ("audt")


def clean(value: object) -> str:
    """Control characters become visible `\\xNN` escapes, so a row is one honest line."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:MAX_FIELD])


def canonical(fields: dict) -> bytes:
    return json.dumps({k: fields[k] for k in CHAINED}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def compute_mac(key: bytes, fields: dict) -> str:
    return hmac.new(key, canonical(fields), hashlib.sha256).hexdigest()


def utc_iso(now: datetime | float) -> str:
    moment = now if isinstance(now, datetime) else datetime.fromtimestamp(now, UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append(session: Session, key: bytes, *, now: datetime | float, action: str,
           actor: str = "monitor", role: str = "system", source_ip: str = "",
           user_agent: str = "", target: str = "", params: dict | None = None,
           outcome: str = "ok", reason: str = "", request_id: str = "",
           evidence: list | None = None) -> AuditRow:
    """Append one row to the chain inside the caller's (write) transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
    head = session.exec(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
    fields = {
        "seq": (head.seq + 1) if head else 1,
        "ts": utc_iso(now),
        "actor": clean(actor), "role": clean(role), "source_ip": clean(source_ip),
        "user_agent": clean(user_agent), "action": clean(action), "target": clean(target),
        "params": json.dumps(params or {}, sort_keys=True, default=str),
        "outcome": clean(outcome), "reason": clean(reason), "request_id": clean(request_id),
        "evidence": json.dumps(evidence or [], sort_keys=True, default=str),
        "prev_mac": head.mac if head else GENESIS,
    }
    row = AuditRow(**fields, mac=compute_mac(key, fields))
    session.add(row)
    session.flush()
    return row


# Checkpoints ---------------------------------------------------------------------------------
def write_checkpoint(store: Store, key: bytes, path: Path, *, now: float) -> dict | None:
    """Append (seq, head mac) to the checkpoint file, signed, and fsync it."""
    with store.read() as session:
        head = session.exec(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
    if head is None:
        return None
    entry = {"seq": head.seq, "mac": head.mac, "at": utc_iso(now)}
    entry["sig"] = hmac.new(key, json.dumps(entry, sort_keys=True).encode(),
                            hashlib.sha256).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry


def read_checkpoints(key: bytes, path: Path) -> tuple[list[dict], list[str]]:
    """Valid checkpoint entries and problems (a forged or garbled line is a problem)."""
    entries, problems = [], []
    if not path.exists():
        return entries, problems
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            entry = json.loads(line)
            sig = entry.pop("sig")
            good = hmac.new(key, json.dumps(entry, sort_keys=True).encode(),
                            hashlib.sha256).hexdigest()
            if not hmac.compare_digest(sig, good):
                raise ValueError("bad signature")
            entries.append(entry)
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"checkpoint line {number}: {exc}")
    return entries, problems


# Verification --------------------------------------------------------------------------------
@dataclass
class Problem:
    seq: int
    kind: str  # modified | deleted | inserted | reordered | truncated | checkpoint
    detail: str

    def as_dict(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass
class Report:
    total: int = 0
    valid: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return f"{self.valid}/{self.total} records valid"

    def as_dict(self) -> dict:
        return {"ok": self.ok, "total": self.total, "valid": self.valid,
                "summary": self.summary(), "problems": [p.as_dict() for p in self.problems]}


def _fields(row: AuditRow, seq: int | None = None) -> dict:
    fields = {k: getattr(row, k) for k in CHAINED}
    if seq is not None:
        fields["seq"] = seq
    return fields


def verify(store: Store, key: bytes, checkpoint_path: Path | None = None) -> Report:
    """Read-only check of the whole chain; every bad row is reported with its reason."""
    with store.read() as session:
        rows = list(session.exec(select(AuditRow).order_by(AuditRow.seq)))
    return verify_rows(rows, key, checkpoint_path)


def verify_rows(rows: list[AuditRow], key: bytes, checkpoint_path: Path | None = None) -> Report:
    """Walk the rows in seq order, following the chain; each row costs one HMAC when intact and
    at most a bounded search (2 * WINDOW HMACs) when it is not."""
    report = Report()
    expected_seq, expected_prev = 1, GENESIS
    valid_macs: dict[int, str] = {}  # original seq -> mac, for checkpoints
    offset = 0  # stored seq minus original seq, once rows were renumbered
    stored = {r.seq for r in rows}
    macs = {r.mac for r in rows}
    for index, row in enumerate(rows):
        original = _placed(row, key, expected_seq, offset, macs)
        report.total += 1
        if original is not None:
            offset = row.seq - original
            if original > expected_seq:
                missing = original - expected_seq
                report.problems.append(Problem(expected_seq, "deleted",
                                               f"{missing} row(s) missing before seq {row.seq}"))
                report.total += missing
                report.valid += 1
            elif row.prev_mac != expected_prev:
                report.problems.append(Problem(row.seq, "reordered",
                                               "intact row, but not linked to the row before it"))
            else:
                report.valid += 1
            valid_macs[original] = row.mac
            expected_seq, expected_prev = original + 1, row.mac
            continue
        moved_to = _original_position(row, key, stored)
        following = rows[index + 1] if index + 1 < len(rows) else None
        if moved_to is not None:
            report.problems.append(Problem(row.seq, "reordered",
                                           f"row belongs at seq {moved_to}"))
            expected_seq, expected_prev = expected_seq + 1, row.mac
        elif row.prev_mac == expected_prev and (following is None
                                                 or following.prev_mac == row.mac):
            report.problems.append(Problem(row.seq, "modified", "content does not match its mac"))
            expected_seq, expected_prev = expected_seq + 1, row.mac
        else:
            report.problems.append(Problem(row.seq, "inserted", "row is not part of the chain"))
    _check_checkpoints(report, key, checkpoint_path, valid_macs, rows)
    return report


WINDOW = 32  # how far a renumbered or moved row is searched for


def _mac_matches(row: AuditRow, key: bytes, seq: int) -> bool:
    return hmac.compare_digest(row.mac, compute_mac(key, _fields(row, seq)))


def _placed(row: AuditRow, key: bytes, expected_seq: int, offset: int,
            macs: set[str]) -> int | None:
    """The original seq of an intact row: where the current renumbering puts it, or just
    after a gap of deleted rows (the rows after a deletion or insertion may be renumbered).
    A row whose predecessor is still stored was moved, not left behind by a deletion."""
    for original in (row.seq - offset, expected_seq):
        if _mac_matches(row, key, original):
            return original
    if row.prev_mac in macs:
        return None
    for original in range(expected_seq + 1, expected_seq + WINDOW):
        if _mac_matches(row, key, original):
            return original
    return None


def _original_position(row: AuditRow, key: bytes, stored: set[int]) -> int | None:
    """The seq under which a moved row's mac verifies (bounded search near its position)."""
    for candidate in range(row.seq - WINDOW, row.seq + WINDOW + 1):
        if candidate != row.seq and candidate in stored and _mac_matches(row, key, candidate):
            return candidate
    return None


def _check_checkpoints(report: Report, key: bytes, path: Path | None, macs: dict[int, str],
                       rows: list[AuditRow]) -> None:
    if path is None:
        return
    entries, problems = read_checkpoints(key, path)
    report.problems.extend(Problem(0, "checkpoint", p) for p in problems)
    if not entries:
        return
    last = max(entries, key=lambda e: e["seq"])
    head = max(macs) if macs else 0
    stored_head = rows[-1].seq if rows else 0
    if last["seq"] > max(head, stored_head):
        report.problems.append(Problem(
            stored_head + 1, "truncated",
            f"checkpoint at {last['at']} saw seq {last['seq']}, the log ends at {stored_head}"))
        report.total += last["seq"] - max(head, stored_head)
        return
    for entry in entries:
        mac = macs.get(entry["seq"])
        if mac is not None and not hmac.compare_digest(mac, entry["mac"]):
            report.problems.append(Problem(entry["seq"], "modified",
                                           "row differs from the checkpointed head"))
