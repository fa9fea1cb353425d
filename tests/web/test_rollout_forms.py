"""The rollout forms: `/actions/rollout/{start,promote,pause,resume,abort}`."""

from __future__ import annotations

import pytest

from tests.web.support import SAME_ORIGIN, audit_rows, auth, post_form

JSON = {**SAME_ORIGIN, "Accept": "application/json"}


def test_it_starts_a_rollout_and_answers_json_with_the_rollout(client, runtime):
    answer = post_form(client, runtime, "/actions/rollout/start", "operator",
                       {"target": "v2", "strategy": "bluegreen", "reason": "release 2"},
                       headers=JSON)
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] is True
    assert {k: body["rollout"][k] for k in ("strategy", "from", "to", "state")} == {
        "strategy": "bluegreen", "from": "v1", "to": "v2", "state": "progressing"}
    (row,) = audit_rows(runtime, "rollout.start")
    assert (row.actor, row.outcome) == ("operator", "ok")
    status = client.get("/api/status", auth=auth("viewer")).json()
    assert status["rollout"]["to"] == "v2"


def test_it_answers_409_when_the_rollout_refuses_and_audits_it(client, runtime):
    answer = post_form(client, runtime, "/actions/rollout/promote", "operator", headers=JSON)
    assert answer.status_code == 409
    assert answer.json()["message"] == "rollout: no rollout to act on"
    assert [r.outcome for r in audit_rows(runtime, "rollout.promote")] == ["refused"]


@pytest.mark.parametrize("form, field", [
    ({"target": ""}, "target:"),
    ({"target": "V2<script>"}, "target:"),
    ({"target": "v2", "strategy": "rainbow"}, "strategy:"),
    ({"target": "v2", "reason": "x" * 501}, "reason:"),
])
def test_it_refuses_bad_input_with_422_naming_the_field_and_changes_nothing(client, runtime,
                                                                           form, field):
    answer = post_form(client, runtime, "/actions/rollout/start", "operator", form)
    assert answer.status_code == 422 and field in answer.text
    assert runtime.status()["rollout"] is None
    assert [r.outcome for r in audit_rows(runtime, "rollout.start")] == ["invalid"]


def test_it_knows_only_the_five_rollout_actions(client, runtime):
    answer = post_form(client, runtime, "/actions/rollout/explode", "operator")
    assert answer.status_code == 404


def test_it_refuses_a_rollout_form_without_a_csrf_token(client, runtime):
    answer = client.post("/actions/rollout/start", data={"target": "v2"},
                         auth=auth("operator"), headers=SAME_ORIGIN, follow_redirects=False)
    assert answer.status_code == 403
    assert runtime.status()["rollout"] is None
    assert [r.outcome for r in audit_rows(runtime, "csrf.rejected")] == ["denied"]
