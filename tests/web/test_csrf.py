"""CSRF: a forged POST is refused with 403, audited, and changes nothing."""

from __future__ import annotations

import pytest

from monitor.web.security import csrf
from tests.web.support import ORIGIN, SAME_ORIGIN, audit_rows, auth, token, token_from

KEY = b"k" * 32


def _state(runtime) -> tuple:
    status = runtime.status()
    return status["active"], status["epoch"], status["paused"]


def _forged(client, clock, case: str) -> tuple[dict, dict]:
    """(form token field, headers) of each forgery."""
    good = {"csrf_token": token(client, "operator")}
    if case == "missing token":
        return {}, SAME_ORIGIN
    if case == "another user's token":
        return {"csrf_token": token(client, "admin")}, SAME_ORIGIN
    if case == "expired token":
        state = client.app.state.web
        old = csrf.issue(state.runtime.keys.csrf, "operator", now=clock() - csrf.TOKEN_TTL - 1,
                         nonce=state.nonces.get("operator"))
        return {"csrf_token": old}, SAME_ORIGIN
    if case == "token without the login nonce":
        state = client.app.state.web
        return {"csrf_token": csrf.issue(state.runtime.keys.csrf, "operator",
                                         now=clock())}, SAME_ORIGIN
    if case == "non-ASCII token":
        return {"csrf_token": "1" * 10 + "." + "\u00e9" * 64}, SAME_ORIGIN
    if case == "garbage token":
        return {"csrf_token": "12.not-a-mac"}, SAME_ORIGIN
    if case == "cross-site fetch":
        return good, {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    if case == "same-site fetch":
        return good, {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.testserver"}
    if case == "Origin null":
        return good, {"Origin": "null"}
    if case == "cross-site Origin null":
        return good, {"Sec-Fetch-Site": "cross-site", "Origin": "null"}
    if case == "foreign Origin":
        return good, {"Origin": "https://evil.example"}
    if case == "foreign Referer":
        return good, {"Referer": "https://evil.example/page"}
    if case == "no origin information":
        return good, {}
    raise AssertionError(case)


FORGERIES = ["missing token", "another user's token", "expired token", "garbage token",
             "token without the login nonce", "non-ASCII token",
             "cross-site fetch", "same-site fetch", "Origin null", "cross-site Origin null",
             "foreign Origin",
             "foreign Referer", "no origin information"]


@pytest.mark.parametrize("case", FORGERIES)
@pytest.mark.parametrize("path, form", [
    ("/actions/failover", {"target": "v2", "reason": "forged", "force": "on"}),
    ("/actions/pause", {"reason": "forged"}),
])
def test_it_refuses_a_forged_post_and_changes_nothing(client, runtime, clock, case, path, form):
    field, headers = _forged(client, clock, case)
    before = _state(runtime)
    response = client.post(path, data={**field, **form}, auth=auth("operator"),
                           headers=headers, follow_redirects=False)
    assert response.status_code == 403, response.text[:200]
    assert _state(runtime) == before
    [row] = audit_rows(runtime, "csrf.rejected")
    assert (row.actor, row.target, row.outcome) == ("operator", path, "denied")
    assert not audit_rows(runtime, "failover.manual") and not audit_rows(runtime,
                                                                          "failover.pause")


@pytest.mark.parametrize("headers", [
    SAME_ORIGIN,
    {"Sec-Fetch-Site": "same-origin"},
    {"Origin": ORIGIN},
    {"Referer": ORIGIN + "/"},
    {"Sec-Fetch-Site": "none"},
])
def test_it_accepts_a_post_from_its_own_page(client, runtime, headers):
    page = client.get("/", auth=auth("operator"))
    response = client.post("/actions/pause", data={"csrf_token": token_from(page.text)},
                           auth=auth("operator"), headers=headers, follow_redirects=False)
    assert response.status_code == 303
    assert runtime.status()["paused"] is True
    assert not audit_rows(runtime, "csrf.rejected")


def test_it_kills_the_tokens_of_a_user_at_logout(client, runtime):
    page = client.get("/", auth=auth("operator"))
    before_logout = token_from(page.text)
    out = client.post("/logout", data={"csrf_token": before_logout}, auth=auth("operator"),
                      headers=SAME_ORIGIN)
    assert out.status_code == 401
    response = client.post("/actions/pause", data={"csrf_token": before_logout},
                           auth=auth("operator"), headers=SAME_ORIGIN, follow_redirects=False)
    assert response.status_code == 403
    assert "logged out" in response.text
    assert runtime.status()["paused"] is False
    fresh = token_from(client.get("/", auth=auth("operator")).text)
    assert fresh != before_logout
    again = client.post("/actions/pause", data={"csrf_token": fresh}, auth=auth("operator"),
                        headers=SAME_ORIGIN, follow_redirects=False)
    assert again.status_code == 303


@pytest.mark.parametrize("sig", ["\u00e9" * 32, "\u2603", "zz"])
def test_it_ignores_a_flash_with_a_non_ascii_signature(client, sig):
    response = client.get("/", params={"msg": "pwned", "ok": "1", "sig": sig},
                          auth=auth("viewer"))
    assert response.status_code == 200
    assert "pwned" not in response.text


def test_it_puts_a_token_in_every_form(client):
    html = client.get("/", auth=auth("admin")).text
    forms = html.count("<form method=\"post\"")
    assert forms > 20
    assert html.count('name="csrf_token"') == forms


@pytest.mark.parametrize("user, token_user, now, problem", [
    ("ann", "ann", 100.0, None),
    ("ann", "bob", 100.0, "not issued to this user"),
    ("ann", "ann", 100.0 + csrf.TOKEN_TTL + 1, "expired"),
])
def test_it_binds_tokens_to_a_user_and_a_time(user, token_user, now, problem):
    issued = csrf.issue(KEY, token_user, now=100.0, nonce="n1")
    result = csrf.token_problem(KEY, user, issued, now=now, nonce="n1")
    assert (result is None) if problem is None else (problem in result)


@pytest.mark.parametrize("tampered", ["", "abc", "99999999999999.00", "100.", ".abc",
                                      "100." + "\u00e9" * 64, "\u0661\u0662." + "a" * 64])
def test_it_refuses_malformed_tokens(tampered):
    assert csrf.token_problem(KEY, "ann", tampered, now=0.0)


@pytest.mark.parametrize("headers, refused", [
    ({"sec-fetch-site": "same-origin"}, False),
    ({"sec-fetch-site": "none"}, False),
    ({"sec-fetch-site": "cross-site"}, True),
    ({"sec-fetch-site": "same-origin", "origin": "https://evil.example"}, True),
    ({"origin": "null"}, True),
    ({"sec-fetch-site": "cross-site", "origin": "null"}, True),
    # what Chromium sends for our own forms under Referrer-Policy: no-referrer
    ({"sec-fetch-site": "same-origin", "origin": "null"}, False),
    ({"origin": "HTTP://TESTSERVER"}, False),
    ({"origin": "http://testserver:8080"}, True),
    ({"referer": "http://testserver/audit?x=1"}, False),
    ({"referer": "http://testserver.evil.example/"}, True),
    ({}, True),
])
def test_it_checks_where_a_post_comes_from(headers, refused):
    assert bool(csrf.origin_problem(headers, {ORIGIN})) is refused
