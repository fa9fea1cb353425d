"""Replicas follow leadership: two monitors with one spec on one private PostgreSQL. Only the
leader runs the replicas of the local version; the follower spawns nothing; when the leader
is killed, the follower takes over and starts its own replicas, and the version stays served."""

from __future__ import annotations

import signal

from tests.e2e.ha import ha_system, wait
from tests.storage.postgres import migrated_database

TTL = 2.0
SPEC = """apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  versions:
    - {name: v1, command: [python, -m, services.v1], replicas: 2}
    - {name: v2, url: "V2"}
    - {name: v3, url: "V3"}
  readinessProbe: {periodSeconds: 1, failureThreshold: 2, timeoutSeconds: 1}
  livenessProbe: {periodSeconds: 1, failureThreshold: 3, timeoutSeconds: 1}
"""


def replicas(status: dict) -> list[dict] | None:
    return next(v for v in status["versions"] if v["name"] == "v1")["replicas"]


def ready(status: dict) -> int:
    return sum(1 for r in replicas(status) or [] if r["ready"])


def test_it_runs_replicas_on_the_leader_only_and_starts_them_on_takeover(pg_cluster, tmp_path):
    with ha_system(pg_cluster, tmp_path, ttl=TTL) as ha:
        ha.database = migrated_database(ha.cluster)
        spec = tmp_path / "books.yaml"
        spec.write_text(SPEC.replace("V2", ha.services["v2"]).replace("V3", ha.services["v3"]))
        ha.start("a", MONITOR_SPEC=str(spec), MONITOR_RESTART_DELAY="1")
        assert ha.wait_leader(timeout=30) == "a"
        ha.start("b", MONITOR_SPEC=str(spec), MONITOR_RESTART_DELAY="1")
        leader, follower = ha.monitors["a"], ha.monitors["b"]
        first = leader.wait_for(lambda s: ready(s) == 2 and s["versions"][0]["state"] == "up",
                                timeout=60)
        assert replicas(follower.status()) is None  # the follower runs no replica
        assert not list((follower.data_dir / "run" / "replicas").glob("*.pid"))
        assert len(ha.actions("replica.start")) == 2

        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(timeout=10)
        assert ha.wait_leader(timeout=30, other_than="a") == "b"
        taken = follower.wait_for(lambda s: ready(s) == 2, timeout=60)
        old = {r["pid"] for r in replicas(first) or []}
        assert not old & {r["pid"] for r in replicas(taken) or []}  # its own replicas
        wait(lambda: len(ha.actions("replica.start")) == 4, timeout=10)
        follower.wait_for(lambda s: s["versions"][0]["state"] == "up" and s["active"] == "v1",
                          timeout=30)
        assert len(list((follower.data_dir / "run" / "replicas").glob("*.pid"))) == 2
