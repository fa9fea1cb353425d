"""The watchdog's queued transactions as journal entries (JSON data) and back.

A decision's transaction is (old state record, new state record, events, time, probe rows,
actor, params); a refused operator action's is its audit row's fields. Both are rebuilt into
the same objects the watchdog writes, so a replay after a restart writes exactly what the
lost process would have written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from monitor.actor import Actor
from monitor.failover.model import Event, MonitorState, Observation, Policy, from_record, to_record
from monitor.failover.probe import ProbeResult

DECISION = "decision"
REFUSAL = "refusal"


def decision_entry(old: MonitorState, new: MonitorState, events: list[Event], now: float,
                   rows: Sequence[ProbeResult], actor: Actor | None,
                   params: dict[str, Any] | None) -> dict[str, Any]:
    probes = [{k: v for k, v in asdict(row).items() if k != "faults"} for row in rows]
    return {"type": DECISION, "old": to_record(old), "new": to_record(new),
            "events": [asdict(e) for e in events], "now": now, "rows": probes,
            "actor": asdict(actor) if actor else None, "params": params}


def refusal_entry(actor: Actor, action: str, target: str, params: dict[str, Any] | None,
                  reason: str, why: str, now: float) -> dict[str, Any]:
    return {"type": REFUSAL, "actor": asdict(actor), "action": action, "target": target,
            "params": params, "reason": reason, "why": why, "now": now}


def event_of(data: dict[str, Any]) -> Event:
    evidence = tuple(Observation(**o) for o in data.get("evidence", ()))
    return Event(**{**data, "evidence": evidence})


def probes_of(entry: dict[str, Any]) -> list[ProbeResult]:
    """The probe rows of a decision entry (journals written before batching hold one `row`)."""
    rows = entry.get("rows", [entry["row"]] if entry.get("row") else [])
    return [ProbeResult(**data) for data in rows]


def actor_of(data: dict[str, Any] | None) -> Actor | None:
    return None if data is None else Actor(**data)


def replay(entry: dict[str, Any], policy: Policy, write: Callable[..., None],
           write_refusal: Callable[..., None]) -> None:
    """Write one journaled transaction as its process would have."""
    now = float(entry["now"])
    actor = actor_of(entry.get("actor"))
    if entry["type"] == REFUSAL:
        assert actor is not None
        write_refusal(actor, entry["action"], entry["target"], entry["params"],
                      entry["reason"], entry["why"], now)
        return
    old, new = from_record(entry["old"], policy, now), from_record(entry["new"], policy, now)
    write(old, new, [event_of(e) for e in entry["events"]], now, probes_of(entry), actor,
          entry["params"], records=(entry["old"], entry["new"]))
