"""The overview's rollout timeline, with rollout rows written through the audit API (as the
rollout backend writes them) and the status' `rollout` field."""

from __future__ import annotations

import re

import pytest

from monitor.actor import SYSTEM, Actor
from tests.web.support import auth

OPERATOR = Actor("operator", "operator")
EVIDENCE = [{"canary_requests": 100, "canary_failures": 31, "canary_p99_ms": 9.0,
             "stable_p99_ms": 8.0, "canary_probe_failures": 0}]


@pytest.fixture
def rollout_status(runtime, monkeypatch):
    """The status as the rollout backend reports it (a field of /api/status)."""
    shown: dict = {"rollout": None}
    status = runtime.status
    monkeypatch.setattr(runtime, "status", lambda: {**status(), **shown})
    return shown


def bad_canary(runtime) -> None:
    record = runtime.recorder.record
    record(OPERATOR, "rollout.start", target="v2", params={"strategy": "canary"},
           reason="canary v1 -> v2")
    record(SYSTEM, "rollout.step", target="v2", params={"step": 0, "weight": 10},
           reason="step 1: setWeight")
    record(SYSTEM, "rollout.analysis", target="v2", params={"step": 0, "weight": 10},
           outcome="failed", reason="success rate 0.690 below 0.99 <b>", evidence=EVIDENCE)
    record(SYSTEM, "rollout.abort", target="v2", params={"step": 0, "weight": 0},
           reason="analysis failed: success rate 0.690 below 0.99 <b>", evidence=EVIDENCE)


def test_it_hides_the_section_when_no_rollout_ever_ran(client):
    page = client.get("/", auth=auth("viewer")).text
    assert re.search(r'<section id="rollout" class="rollout" hidden>', page)


def test_it_shows_an_aborted_canary_with_its_evidence_and_why(client, runtime, rollout_status):
    bad_canary(runtime)
    rollout_status["rollout"] = {"strategy": "canary", "from": "v1", "to": "v2", "step": 0,
                                 "weight": 0, "state": "aborted"}
    for path in ("/", "/partials/rollout"):
        html = client.get(path, auth=auth("viewer")).text
        section = html.split('<section id="rollout"')[1].split("</section>")[0]
        assert re.search(r'data-field="rollout-state"[^>]*>aborted<', section)
        assert re.search(r'data-field="rollout-weight">0 %<', section)
        assert "v1 &rarr; v2" in section
        why = re.search(r'data-field="rollout-why">([^<]*)<', section)
        assert why and why.group(1).startswith(
            "analysis failed: success rate 0.690 below 0.99 &lt;b&gt;")
        step = re.search(r'<tr data-step="0"[^>]*>.*?data-col="analysis">([^<]*)<', section)
        assert step and step.group(1).startswith("failed: success rate 0.690")
        assert "canary_success_rate=0.690" in section and "<b>" not in section
        assert [a for a in re.findall(r'data-action="(\w+)"', section)] == [
            "abort", "analysis", "step", "start"]


def test_it_shows_the_current_weight_of_a_progressing_rollout(client, runtime, rollout_status):
    runtime.recorder.record(SYSTEM, "rollout.start", target="v2", reason="canary v1 -> v2")
    runtime.recorder.record(SYSTEM, "rollout.step", params={"step": 2, "weight": 50})
    rollout_status["rollout"] = {"strategy": "canary", "from": "v1", "to": "v2", "step": 2,
                                 "weight": 50, "state": "progressing"}
    section = client.get("/partials/rollout", auth=auth("viewer")).text
    assert re.search(r'<meter min="0" max="100" value="50">', section)
    assert 'data-field="rollout-why"' not in section
    assert re.search(r'<tr data-step="2" class="is-current">', section)


def test_it_starts_a_new_timeline_with_each_rollout(client, runtime):
    bad_canary(runtime)
    runtime.recorder.record(OPERATOR, "rollout.start", target="v3", outcome="refused",
                            reason="a rollout is running")
    runtime.recorder.record(OPERATOR, "rollout.start", target="v3", reason="bluegreen v1 -> v3")
    section = client.get("/partials/rollout", auth=auth("viewer")).text
    assert re.findall(r'data-action="(\w+)"', section) == ["start"]
    assert 'data-field="rollout-state" class="rollout-progressing">progressing<' in section


def test_it_reads_step_and_weight_from_the_rows_without_a_status(client, runtime):
    bad_canary(runtime)
    section = client.get("/partials/rollout", auth=auth("viewer")).text
    assert re.search(r'data-field="rollout-weight">0 %<', section)  # the abort's weight
    assert re.search(r'data-field="rollout-step">0<', section)
    assert re.search(r'data-field="rollout-strategy">canary<', section)
    assert re.search(r'<tr data-step="0"[^>]*><td>0</td><td>10 %</td>', section)  # its step
    assert re.search(r'data-field="rollout-state"[^>]*>aborted<', section)
