"""The reconciler as a table: desired replicas and observed processes -> actions."""

import pytest

from monitor.desired.reconciler import Action, ActionKind, Replica, Thresholds, reconcile

T = Thresholds(readiness_failures=3, liveness_failures=3, startup_timeout=5)
START, STOP, RESTART = ActionKind.START, ActionKind.STOP, ActionKind.RESTART
READY, UNREADY = ActionKind.READY, ActionKind.UNREADY


def up(rid, version="v1", at=0.0, **kw):
    fields = {"in_rotation": True, "has_lived": True, **kw}
    return Replica(id=rid, version=version, started_at=at, **fields)


def kinds(actions):
    return [(a.kind, a.version, a.replica) for a in actions]


@pytest.mark.parametrize("wanted, observed, expected", [
    # converged: nothing to do
    ({"v1": 2}, [up("a"), up("b")], []),
    # scale up from zero
    ({"v1": 2}, [], [(START, "v1", None), (START, "v1", None)]),
    # scale down: the newest goes first
    ({"v1": 1}, [up("a", at=1), up("b", at=2)], [(STOP, "v1", "b")]),
    # scale down: an unready replica goes before a newer ready one
    ({"v1": 1}, [up("a", at=5), Replica("b", "v1", 1, has_lived=True)], [(STOP, "v1", "b")]),
    # a replica starting (not yet ready) counts: a spec change to 2 starts one more, not two
    ({"v1": 2}, [Replica("a", "v1", 9.0)], [(START, "v1", None)]),
    # a replica being stopped does not count
    ({"v1": 1}, [up("a", stopping=True)], [(START, "v1", None)]),
    # a version removed from the spec is stopped whole
    ({"v2": 1}, [up("a"), up("b", version="v2")], [(STOP, "v1", "a")]),
    # process exit: out of rotation at once, still counted (the supervisor restarts it)
    ({"v1": 1}, [up("a", alive=False)], [(UNREADY, "v1", "a")]),
    # liveness failing after it was live once: restart and out of rotation
    ({"v1": 1}, [up("a", liveness_failures=3, has_lived=True)],
     [(RESTART, "v1", "a"), (UNREADY, "v1", "a")]),
    # a slow start is not a failure (startup probe) ...
    ({"v1": 1}, [Replica("a", "v1", 8.0, liveness_failures=9)], []),
    # ... until the startup timeout
    ({"v1": 1}, [Replica("a", "v1", 4.0, liveness_failures=9)], [(RESTART, "v1", "a")]),
    # readiness failing: out of rotation after the threshold only
    ({"v1": 1}, [up("a", readiness_failures=2)], []),
    ({"v1": 1}, [up("a", readiness_failures=3)], [(UNREADY, "v1", "a")]),
    # readiness passing again: back in rotation
    ({"v1": 1}, [Replica("a", "v1", 0, readiness_successes=1, has_lived=True)],
     [(READY, "v1", "a")]),
    # the exited replica is the first to go when scaling down
    ({"v1": 1}, [up("a", at=1), up("b", at=0, alive=False, in_rotation=False)],
     [(STOP, "v1", "b")]),
])
def test_it_closes_the_gap(wanted, observed, expected):
    assert kinds(reconcile(wanted, observed, T, now=10.0)) == expected


def test_it_gives_each_action_a_reason():
    actions = reconcile({"v1": 3}, [up("a", liveness_failures=4, has_lived=True)], T, now=10.0)
    assert Action(RESTART, "v1", "a", "liveness probe failed 4 times") in actions
    assert all(a.reason for a in actions)


def test_it_is_idempotent_once_applied():
    """Applying the actions (as a controller would) leaves nothing more to do."""
    observed = [up("a", at=6, has_lived=True), up("b", at=7, has_lived=True),
                up("c", at=8, has_lived=True)]
    actions = reconcile({"v1": 1}, observed, T, now=10.0)
    stopped = {a.replica for a in actions if a.kind == STOP}
    after = [r for r in observed if r.id not in stopped]
    assert reconcile({"v1": 1}, after, T, now=11.0) == []


def old(rid, **kw):
    return up(rid, template="old", **kw)


def new(rid, **kw):
    return up(rid, template="new", **kw)


@pytest.mark.parametrize("wanted, observed, expected", [
    # a command change: one new replica beside the old one, nothing stopped yet
    ({"v1": 1}, [old("a")], [(START, "v1", None)]),
    # the new one is starting: no second surge, the old one keeps serving
    ({"v1": 1}, [old("a"), new("b", in_rotation=False, has_lived=False, at=9)], []),
    # the new one is ready: the old one goes
    ({"v1": 1}, [old("a"), new("b", at=9)], [(STOP, "v1", "a")]),
    # three old ones: one surge at a time, never fewer than three ready
    ({"v1": 3}, [old("a"), old("b"), old("c")], [(START, "v1", None)]),
    ({"v1": 3}, [old("a", at=1), old("b", at=2), old("c", at=3), new("d", at=9)],
     [(STOP, "v1", "c")]),
    ({"v1": 3}, [old("a"), old("b"), new("d", at=9)], [(START, "v1", None)]),
    # an old replica that is not ready goes at once
    ({"v1": 2}, [old("a", in_rotation=False), new("b", at=9)],
     [(START, "v1", None), (STOP, "v1", "a")]),
    # scaled to zero with a new command: the old ones simply go
    ({"v1": 0}, [old("a")], [(STOP, "v1", "a")]),
])
def test_it_replaces_replicas_of_an_old_template_without_losing_ready_ones(
        wanted, observed, expected):
    assert kinds(reconcile(wanted, observed, T, now=10.0, templates={"v1": "new"})) == expected


def test_it_treats_every_replica_as_current_without_templates():
    assert reconcile({"v1": 1}, [old("a")], T, now=10.0) == []
