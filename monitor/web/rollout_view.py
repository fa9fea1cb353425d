"""PURE: the overview's rollout timeline, from `/api/status` `rollout` and the audit rows of
the latest rollout (`rollout.start|step|analysis|pause|resume|promote|abort|complete`).

The status says where the rollout is now (`strategy`, `from`, `to`, `step`, `weight`,
`state`); the rows say how it got there: every step with its weight, the analysis results at
that step with their evidence, operator actions, and the row that stopped it (abort, pause,
complete), whose reason is "why it stopped". Rows are read as data: a field a row lacks is
shown as unknown, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from monitor.storage.store import AuditRow


class RolloutState(StrEnum):
    PROGRESSING = "progressing"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"


STOPPING = {"rollout.abort": RolloutState.ABORTED, "rollout.pause": RolloutState.PAUSED,
            "rollout.complete": RolloutState.COMPLETED}
ANALYSIS = "rollout.analysis"
PASSED = ("ok", "passed", "pass", "success")
REFUSED = ("refused", "denied", "invalid")
MOVING_ON = ("start", "resume", "promote", "step")


@dataclass(frozen=True)
class Row:
    """One rollout audit row as the timeline shows it."""

    seq: int
    ts: str
    action: str  # without the "rollout." prefix
    actor: str
    outcome: str
    reason: str
    step: int | None
    weight: int | None
    strategy: str = ""
    evidence: tuple[tuple[str, str], ...] = ()


@dataclass
class StepView:
    step: int
    weight: int | None = None
    analyses: list[Row] = field(default_factory=list)

    @property
    def result(self) -> str:
        if not self.analyses:
            return "no analysis yet"
        failed = [a for a in self.analyses if a.outcome not in PASSED]
        passed = len(self.analyses) - len(failed)
        return f"failed: {failed[-1].reason}" if failed else \
            f"passed ({passed} interval{'s' if passed != 1 else ''})"


def _loads(text: str) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def evidence_pairs(evidence: Any) -> tuple[tuple[str, str], ...]:
    """Flat `key=value` pairs of an analysis' evidence (a dict, or a list of dicts), with the
    success rate worked out when the request counts are there."""
    items = [evidence] if isinstance(evidence, dict) else \
        [e for e in evidence if isinstance(e, dict)] if isinstance(evidence, list) else []
    pairs: list[tuple[str, str]] = []
    for item in items:
        requests, failures = _int(item.get("canary_requests")), _int(item.get("canary_failures"))
        if requests and failures is not None:
            pairs.append(("canary_success_rate", f"{1 - failures / requests:.3f}"))
        pairs.extend((str(k), f"{v:.1f}" if isinstance(v, float) else str(v))
                     for k, v in item.items() if v is not None and not isinstance(v, dict | list))
    return tuple(pairs)


def row_of(row: AuditRow) -> Row:
    params = _loads(row.params)
    params = params if isinstance(params, dict) else {}
    evidence = _loads(row.evidence)
    if not evidence and isinstance(params.get("evidence"), dict | list):
        evidence = params["evidence"]
    return Row(seq=row.seq, ts=row.ts, action=row.action.removeprefix("rollout."),
               actor=row.actor, outcome=row.outcome, reason=row.reason,
               step=_int(params.get("step")), weight=_int(params.get("weight")),
               strategy=str(params.get("strategy") or ""),
               evidence=evidence_pairs(evidence))


def timeline(status: dict[str, Any] | None, rows: list[AuditRow]) -> dict[str, Any] | None:
    """What the rollout section shows; None when no rollout ever ran."""
    shown = [row_of(r) for r in rows]
    if status is None and not shown:
        return None
    status = status or {}
    steps: dict[int, StepView] = {}
    stopped_by: Row | None = None
    for row in shown:
        if row.step is not None:
            view = steps.setdefault(row.step, StepView(row.step))
            if row.weight is not None and row.action == "step":
                view.weight = row.weight
            if row.action == "analysis":
                view.analyses.append(row)
        if row.outcome in REFUSED:
            continue  # a refused operator action changed nothing
        if f"rollout.{row.action}" in STOPPING:
            stopped_by = row
        elif row.action in MOVING_ON:
            stopped_by = None
    start = next((r for r in shown if r.action == "start"), None)
    last_step = next((r.step for r in reversed(shown) if r.step is not None), None)
    last_weight = next((r.weight for r in reversed(shown)
                        if r.weight is not None and r.outcome not in REFUSED), None)
    state = str(status.get("state") or (STOPPING[f"rollout.{stopped_by.action}"]
                                        if stopped_by else RolloutState.PROGRESSING))
    return {
        "strategy": status.get("strategy") or (start.strategy or start.reason if start else ""),
        "source": status.get("from"), "target": status.get("to"),
        "step": status.get("step", last_step),
        "weight": _int(status["weight"]) if "weight" in status else last_weight,
        "state": state, "live": bool(status),
        "why_stopped": stopped_by.reason if stopped_by and state != RolloutState.PROGRESSING
        else "",
        "stopped_at": stopped_by.ts if stopped_by and state != RolloutState.PROGRESSING else "",
        "steps": [steps[n] for n in sorted(steps)], "rows": shown[::-1],
    }
