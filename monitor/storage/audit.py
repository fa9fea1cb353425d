"""The tamper-evident audit log: an HMAC chain over rows, checkpoints, and verification.

Each row stores `seq`, `prev_mac` and `mac = HMAC-SHA256(audit_key, canonical JSON of the row
including seq and prev_mac)`. Appends run inside the caller's write transaction (`BEGIN
IMMEDIATE`), so the row lands atomically with the action it records and two writers can never
fork the chain (on PostgreSQL, `pg_advisory_xact_lock(AUDIT_LOCK)` serialises appends across
monitors until the transaction ends). Checkpoints of (seq, head mac) are kept in a file outside
the database so a deleted tail is caught too (storage.checkpoints); verification is in
storage.verification.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, or_, text
from sqlmodel import Session, col, select

from monitor.storage.checkpoints import write_checkpoint as write_checkpoint
from monitor.storage.store import SECURITY_ROW, AuditRow, Store

if TYPE_CHECKING:
    from monitor.storage.verification import Progress, Report

GENESIS = "0" * 64
CHAINED = ("seq", "ts", "actor", "role", "source_ip", "user_agent", "action", "target", "params",
           "outcome", "reason", "request_id", "evidence", "prev_mac")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_FIELD = 2000
AUDIT_LOCK = 0x61756474  # PostgreSQL advisory lock key of the chain head ("audt")
# Actions after whose commit a checkpoint is written at once (besides the one every minute).
SECURITY_ACTIONS = ("login.", "access.denied", "csrf.", "chaos.", "failover.", "user.",
                    "incident.", "audit.")


def security_relevant(action: str) -> bool:
    return action.startswith(SECURITY_ACTIONS)


def clean(value: object) -> str:
    """Control characters become visible `\\xNN` escapes, so a row is one honest line."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:MAX_FIELD])


def canonical(fields: Mapping[str, Any]) -> bytes:
    return json.dumps({k: fields[k] for k in CHAINED}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def compute_mac(key: bytes, fields: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical(fields), hashlib.sha256).hexdigest()


def family_of(action: str) -> str:
    """An action's first dotted part: `login` for `login.failed`."""
    return action.split(".", 1)[0]


def action_filter(action: str) -> ColumnElement[bool]:
    """Rows whose action is `action` or under it (`login` finds `login.failed`), as a
    condition an index answers: the family column for a plain word, a range of `action`
    (`x.` <= action < `x/`) for a dotted one; never LIKE (a scan)."""
    if "." not in action:
        return col(AuditRow.family) == action
    return or_(col(AuditRow.action) == action,
               and_(col(AuditRow.action) >= action + ".", col(AuditRow.action) < action + "/"))


def utc_iso(now: datetime | float) -> str:
    moment = now if isinstance(now, datetime) else datetime.fromtimestamp(now, UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append(session: Session, key: bytes, *, now: datetime | float, action: str,
           actor: str = "monitor", role: str = "system", source_ip: str = "",
           user_agent: str = "", target: str = "", params: Mapping[str, Any] | None = None,
           outcome: str = "ok", reason: str = "", request_id: str = "",
           evidence: list[Any] | None = None) -> AuditRow:
    """Append one row to the chain inside the caller's (write) transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
    head = session.exec(select(AuditRow).order_by(col(AuditRow.seq).desc()).limit(1)).first()
    fields: dict[str, Any] = {
        "seq": (head.seq + 1) if head else 1,
        "ts": utc_iso(now),
        "actor": clean(actor), "role": clean(role), "source_ip": clean(source_ip),
        "user_agent": clean(user_agent), "action": clean(action), "target": clean(target),
        "params": json.dumps(params or {}, sort_keys=True, default=str),
        "outcome": clean(outcome), "reason": clean(reason), "request_id": clean(request_id),
        "evidence": json.dumps(evidence or [], sort_keys=True, default=str),
        "prev_mac": head.mac if head else GENESIS,
    }
    row = AuditRow(**fields, mac=compute_mac(key, fields), family=family_of(fields["action"]))
    session.add(row)
    session.flush()
    if security_relevant(action):
        session.info[SECURITY_ROW] = True
    return row


def verify(store: Store, key: bytes, checkpoint_path: Path | None = None, *, full: bool = True,
           archive_dir: Path | None = None, progress: Progress | None = None) -> Report:
    """The chain, streamed; `full=False` from the newest verified checkpoint (see
    storage.verifier)."""
    from monitor.storage import verifier  # it builds on this module

    return verifier.verify(store, key, checkpoint_path, full=full, archive_dir=archive_dir,
                           progress=progress)
