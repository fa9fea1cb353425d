"""Two monitors, one PostgreSQL, three services, a real SMTP server: one leader, fenced.

Timings: lease TTL 2 s (renew every 0.67 s), probes every 0.5 s. Every wait is for an event
with a generous deadline; nothing asserts speed (bench/takeover.py measures it).
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.e2e.ha import HaSystem, ha_system, wait

TTL = 2.0


@pytest.fixture
def ha(pg_cluster, tmp_path):
    with ha_system(pg_cluster, tmp_path, ttl=TTL) as system:
        system.start_pair()
        yield system


def follower_of(ha: HaSystem, leader: str) -> str:
    return next(name for name in ha.monitors if name != leader)


def test_it_completes_the_failover_exactly_once_when_the_leader_is_killed_mid_incident(ha):
    leader = ha.wait_leader(timeout=10)
    follower = follower_of(ha, leader)
    ha.crash("v1")
    ha.monitors[leader].proc.send_signal(signal.SIGKILL)  # in the middle of the incident
    ha.monitors[leader].proc.wait(timeout=10)

    assert ha.wait_leader(timeout=30, other_than=leader) == follower
    ha.monitors[follower].wait_for(lambda s: s["active"] == "v2", timeout=30)
    ha.wait_mail(1, timeout=45)
    time.sleep(2 * TTL)  # a duplicate decision or email would show up by now
    assert len(ha.actions("failover.automatic")) == 1
    assert len(ha.inbox.messages) == 1 and "v1 -> v2" in ha.inbox.messages[0]["Subject"]
    taken = ha.actions("lease.acquired")[-1]["params"]
    assert taken["how"] == "takeover" and len(ha.actions("lease.lost")) == 1
    code, output = ha.verify_audit(follower)
    assert code == 0, output


def test_it_lets_a_paused_then_resumed_leader_write_nothing(ha):
    old = ha.wait_leader(timeout=10)
    new = follower_of(ha, old)
    paused = ha.monitors[old]
    paused.proc.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        assert ha.wait_leader(timeout=30, other_than=old) == new
        ha.crash("v1")  # an incident the paused leader would act on if it could
        ha.monitors[new].wait_for(lambda s: s["active"] == "v2", timeout=30)
        time.sleep(max(0.0, 2 * TTL - (time.monotonic() - stopped_at)))
    finally:
        resumed_at = ha.db_now()
        paused.proc.send_signal(signal.SIGCONT)
    paused.wait_for(lambda s: s["leader"] is not None and s["leader"]["self"] is False
                    and s["active"] == "v2", timeout=20)
    ha.wait_mail(1, timeout=45)
    time.sleep(2 * TTL)  # the resumed process has every chance to act on its stale view

    assert ha.writes_by(old, resumed_at) == []
    assert ha.writes_by(new, resumed_at) != []  # the trigger sees the leader's writes
    assert len(ha.actions("failover.automatic")) == 1
    assert len(ha.inbox.messages) == 1
    assert ha.leader_from_db() == new
    code, output = ha.verify_audit(new)
    assert code == 0, output


def test_it_hands_over_at_once_on_a_clean_shutdown(ha):
    old = ha.wait_leader(timeout=10)
    new = follower_of(ha, old)
    assert ha.monitors[old].stop(signal.SIGTERM) == 0
    assert ha.wait_leader(timeout=20, other_than=old) == new
    released, acquired = ha.actions("lease.released")[-1], ha.actions("lease.acquired")[-1]
    assert released["seq"] < acquired["seq"]
    assert acquired["params"]["how"] == "handover" and acquired["params"]["term"] == 2
    for name in (new, old):  # each monitor's own checkpoint file agrees with the chain
        code, output = ha.verify_audit(name)
        assert code == 0, (name, output)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the overview page carries no csrf_token"
    return match.group(1)


def test_it_applies_an_action_clicked_on_the_follower_once_as_the_operator(ha):
    leader = ha.wait_leader(timeout=10)
    name = follower_of(ha, leader)
    follower = ha.monitors[name]
    before = ha.db_now()
    origin = {"Origin": follower.url, "Sec-Fetch-Site": "same-origin"}
    with follower.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and "term" in page.text
        token = csrf_token(page.text)
        answer = client.post("/actions/pause", headers=origin,
                             data={"csrf_token": token, "reason": "maintenance window"})
        assert answer.status_code in (200, 303)
        ha.monitors[leader].wait_for(lambda s: s["paused"], timeout=20)
        answer = client.post("/actions/failover", headers=origin,
                             data={"csrf_token": token, "target": "v2", "reason": "drill"})
        assert answer.status_code in (200, 303)
    ha.monitors[leader].wait_for(lambda s: s["active"] == "v2", timeout=20)
    follower.wait_for(lambda s: s["paused"] and s["active"] == "v2", timeout=20)
    wait(lambda: ha.sql("SELECT count(*) FROM operator_command WHERE status = 'done'")[0][0]
         == 2, timeout=10)
    [pause] = ha.actions("failover.pause")
    [manual] = ha.actions("failover.manual")
    for row, why in ((pause, "maintenance window"), (manual, "drill")):
        assert row["actor"] == "admin" and row["request_id"].startswith("cmd-")
        assert why in row["reason"]
    # the follower only queued the commands; the leader wrote the actions and their audit rows
    assert [(table, op) for _, table, op in ha.writes_by(name, before)] == [
        ("operator_command", "INSERT")] * 2
