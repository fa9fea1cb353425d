"""The watchdog's queued transactions as journal entries (JSON data) and back.

A decision's transaction is (old state record, new state record, events, time, probe row,
actor, params); a refused operator action's is its audit row's fields. Both are rebuilt into
the same objects the watchdog writes, so a replay after a restart writes exactly what the
lost process would have written.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from monitor.actor import Actor
from monitor.failover.model import Event, MonitorState, Observation, to_record
from monitor.failover.probe import ProbeResult

DECISION = "decision"
REFUSAL = "refusal"


def decision_entry(old: MonitorState, new: MonitorState, events: list[Event], now: float,
                   row: ProbeResult | None, actor: Actor | None,
                   params: dict[str, Any] | None) -> dict[str, Any]:
    probe = None
    if row is not None:
        probe = {k: v for k, v in asdict(row).items() if k != "faults"}
    return {"type": DECISION, "old": to_record(old), "new": to_record(new),
            "events": [asdict(e) for e in events], "now": now, "row": probe,
            "actor": asdict(actor) if actor else None, "params": params}


def refusal_entry(actor: Actor, action: str, target: str, params: dict[str, Any] | None,
                  reason: str, why: str, now: float) -> dict[str, Any]:
    return {"type": REFUSAL, "actor": asdict(actor), "action": action, "target": target,
            "params": params, "reason": reason, "why": why, "now": now}


def event_of(data: dict[str, Any]) -> Event:
    evidence = tuple(Observation(**o) for o in data.get("evidence", ()))
    return Event(**{**data, "evidence": evidence})


def probe_of(data: dict[str, Any] | None) -> ProbeResult | None:
    return None if data is None else ProbeResult(**data)


def actor_of(data: dict[str, Any] | None) -> Actor | None:
    return None if data is None else Actor(**data)
