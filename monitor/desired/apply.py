"""Applying a spec: validate, diff against the newest revision, store it, audit it.

One write transaction holds the new revision and its audit row (`spec.apply`, with the diff),
so a spec is never in force without its audit row. A bad spec raises SpecError before
anything is written; `dry_run` computes the diff and writes nothing. Applying the same text
again is audited as `unchanged` and stores no new revision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from monitor.actor import Actor
from monitor.desired.diff import diff
from monitor.desired.spec import ServiceSpec, SpecError, parse
from monitor.storage import audit, specs
from monitor.storage.store import Store


@dataclass(frozen=True)
class Applied:
    revision: int | None  # None when nothing was stored (dry run or unchanged)
    changes: list[str]
    services: list[ServiceSpec]
    dry_run: bool = False


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def current(store: Store) -> tuple[int | None, list[ServiceSpec], str]:
    """The newest revision number, its services and its text (None, [], "" before any apply)."""
    with store.read() as session:
        row = specs.newest(session)
    if row is None:
        return None, [], ""
    return row.id, parse(row.text), row.text


def apply(store: Store, audit_key: bytes, text: str, *, who: Actor, now: float,
          dry_run: bool = False) -> Applied:
    """Validate and store `text` as the new desired state; SpecError changes nothing."""
    services = parse(text)
    if dry_run:
        _, before, _ = current(store)
        return Applied(None, diff(before, services), services, dry_run=True)
    with store.write() as session:
        row = specs.newest(session)
        before = parse(row.text) if row else []
        changes = diff(before, services)
        unchanged = row is not None and row.digest == digest(text)
        stored = None if unchanged else specs.add(session, text=text, digest=digest(text),
                                                  actor=who.name, now=now).id
        audit.append(session, audit_key, now=now, action="spec.apply", **who.audit_fields(),
                     target=",".join(s.name for s in services),
                     params={"revision": stored, "diff": changes},
                     outcome="unchanged" if unchanged else "ok")
    return Applied(stored, changes, services)


def audit_refused(store: Store, audit_key: bytes, error: SpecError, *, who: Actor,
                  now: float) -> None:
    """A refused apply is audited too (nothing else changes)."""
    with store.write() as session:
        audit.append(session, audit_key, now=now, action="spec.apply", **who.audit_fields(),
                     outcome="invalid", reason=str(error)[:500])
