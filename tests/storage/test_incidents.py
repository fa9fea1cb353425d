"""Incidents folded from the audit log: a scenario table of rows -> incidents."""

from __future__ import annotations

import pytest

from monitor.storage.incidents import Entry, IncidentKind, IncidentSummary, step

T0 = 1_750_000_000.0


def entries(script: str) -> list[Entry]:
    """`state v1 up->down`, `auto v1->v2`, `manual v2->v1`, `failback v2->v1`, `refused v1->v3`,
    `opened`, `closed`; one per second."""
    found = []
    for n, line in enumerate(s.strip() for s in script.split(",")):
        word, _, rest = line.partition(" ")
        at = T0 + n
        if word == "state":
            version, change = rest.split(" ")
            old, new = change.split("->")
            found.append(Entry(n + 1, at, "version.state", version, f"{old} -> {new}"))
        elif word in ("auto", "manual", "failback", "refused"):
            source, target = rest.split("->")
            action = "failover.automatic" if word in ("auto", "failback") else "failover.manual"
            found.append(Entry(n + 1, at, action, target, outcome="refused" if word == "refused"
                               else "ok", params={"source": source,
                                                  "failback": word == "failback"}))
        else:
            found.append(Entry(n + 1, at, f"incident.{word}"))
    return found


def fold(script: str) -> tuple[str, list[IncidentSummary]]:
    active, current, done = "v1", None, []
    for entry in entries(script):
        active, current, closed = step(active, current, entry)
        if closed:
            done.append(closed)
    return active, done + ([current] if current else [])


@pytest.mark.parametrize("script, active, expected", [
    # (kind, failed version, id, closed at row, recovered by)
    ("state v1 up->down, auto v1->v2", "v2",
     [(IncidentKind.FAILOVER, "v1", 1, 2, "automatic failover to v2")]),
    ("state v2 up->down, state v1 up->down, state v1 down->up", "v1",  # a standby is no incident
     [(IncidentKind.OUTAGE, "v1", 2, 3, "v1 up again")]),
    ("state v1 up->flapping, manual v1->v3", "v3",
     [(IncidentKind.FAILOVER, "v1", 1, 2, "manual failover by an operator to v3")]),
    ("auto v1->v2", "v2",  # the down row is older than the log: the switch opens and closes it
     [(IncidentKind.FAILOVER, "v1", 1, 1, "automatic failover to v2")]),
    ("manual v1->v2, failback v2->v1", "v1", []),  # planned switches are no incidents
    ("state v1 up->down, refused v1->v3, state v1 down->up", "v1",
     [(IncidentKind.OUTAGE, "v1", 1, 3, "v1 up again")]),
    ("state v1 up->down, opened, auto v1->v2, closed", "v2",
     [(IncidentKind.ALL_DOWN, "v1", 1, 4, "v2 up again")]),
    ("state v1 up->down", "v1", [(IncidentKind.OUTAGE, "v1", 1, None, "")]),
    ("manual v1->v2, state v2 up->down, auto v2->v3, state v3 up->down, opened", "v3",
     [(IncidentKind.FAILOVER, "v2", 2, 3, "automatic failover to v3"),
      (IncidentKind.ALL_DOWN, "v3", 4, None, "")]),
])
def test_it_folds_the_log_into_incidents(script, active, expected):
    now_active, found = fold(script)
    assert now_active == active
    assert [(i.kind, i.version, i.id, i.closed_at and int(i.closed_at - T0 + 1),
             i.recovered_by) for i in found] == expected


def test_it_measures_recovery_from_the_first_failed_probe_of_the_evidence():
    down = Entry(1, T0 + 10, "version.state", "v1", "up -> down", evidence=[
        {"version": "v1", "ok": True, "at": T0 + 2}, {"version": "v1", "ok": False, "at": T0 + 4},
        {"version": "v1", "ok": False, "at": T0 + 7}])
    switch = Entry(2, T0 + 12, "failover.automatic", "v2", params={"source": "v1"})
    _, current, _ = step("v1", None, down)
    assert current is not None and current.open and current.time_to_recover() is None
    _, current, closed = step("v1", current, switch)
    assert current is None and closed is not None
    assert closed.first_failure_at == T0 + 4
    assert closed.time_to_recover() == 8.0
