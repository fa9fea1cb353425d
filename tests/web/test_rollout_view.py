"""The rollout timeline read from rollout audit rows and the status (pure), as a table."""

from __future__ import annotations

import json

import pytest

from monitor.storage.store import AuditRow
from monitor.web.rollout_view import evidence_pairs, timeline

BAD = {"canary_requests": 200, "canary_failures": 60, "canary_p99_ms": 12.5,
       "stable_p99_ms": 10.0, "canary_probe_failures": 0}


def rows(script: str) -> list[AuditRow]:
    """`start`, `step 1 10` (step, weight), `analysis 1 ok|failed`, `pause`, `resume`,
    `abort`, `complete`, `promote refused`."""
    found = []
    for seq, line in enumerate((s.split() for s in script.split(",")), start=1):
        action, args = line[0], line[1:]
        params: dict = {}
        outcome, evidence, reason = "ok", [], f"reason {seq}"
        if action in ("step", "analysis"):
            params["step"] = int(args[0])
            if action == "step":
                params["weight"] = int(args[1])
            else:
                outcome = args[1]
                evidence = [BAD] if outcome == "failed" else []
        elif args:
            outcome = args[0]
        found.append(AuditRow(seq=seq, ts=f"2026-01-01T00:00:{seq:02d}.000Z", actor="monitor",
                              action=f"rollout.{action}", params=json.dumps(params),
                              outcome=outcome, reason=reason, evidence=json.dumps(evidence),
                              prev_mac="", mac=""))
    return found


@pytest.mark.parametrize("script, state, why, results", [
    ("start, step 0 10, analysis 0 ok, step 2 50", "progressing", "",
     ["passed (1 interval)", "no analysis yet"]),
    ("start, step 0 10, analysis 0 failed, abort", "aborted", "reason 4", ["failed: reason 3"]),
    ("start, step 0 10, pause", "paused", "reason 3", ["no analysis yet"]),
    ("start, step 0 10, pause, resume", "progressing", "", ["no analysis yet"]),
    ("start, step 0 10, pause, promote refused", "paused", "reason 3", ["no analysis yet"]),
    ("start, step 0 10, analysis 0 ok, analysis 0 ok, step 1 100, complete", "completed",
     "reason 6", ["passed (2 intervals)", "no analysis yet"]),
])
def test_it_reads_where_a_rollout_stands_from_its_rows(script, state, why, results):
    shown = timeline(None, rows(script))
    assert shown is not None
    assert (shown["state"], shown["why_stopped"]) == (state, why)
    assert [s.result for s in shown["steps"]] == results
    assert [r.seq for r in shown["rows"]] == sorted((r.seq for r in shown["rows"]), reverse=True)


def test_it_prefers_the_status_for_where_the_rollout_is_now():
    status = {"strategy": "canary", "from": "v1", "to": "v2", "step": 2, "weight": 50,
              "state": "paused"}
    shown = timeline(status, rows("start, step 0 10"))
    assert shown is not None
    assert (shown["source"], shown["target"], shown["weight"], shown["state"]) == \
        ("v1", "v2", 50, "paused")
    assert [(s.step, s.weight) for s in shown["steps"]] == [(0, 10)]


def test_it_shows_nothing_when_no_rollout_ever_ran():
    assert timeline(None, []) is None


def test_it_works_out_the_success_rate_of_the_evidence():
    pairs = dict(evidence_pairs([BAD]))
    assert pairs["canary_success_rate"] == "0.700"
    assert pairs["canary_p99_ms"] == "12.5"
    assert evidence_pairs("not evidence") == ()
