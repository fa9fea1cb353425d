"""Schemathesis fuzzes the dashboard's JSON API and forms from its own OpenAPI document, as
each role: no 500, no response without the security headers, every answer as documented, and
no state change from a request that was refused. Bounded: FUZZ_EXAMPLES per operation and
role (MONITOR_FUZZ_EXAMPLES to raise it), no deadline. The number of cases tried is printed."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from monitor.storage.users import list_users
from monitor.web.app import create_app
from monitor.web.openapi import document
from monitor.web.security.throttle import Lockout
from tests.web.support import CHEAP_HASHER, SAME_ORIGIN, auth, token
from tests.web.test_headers import assert_secure

FUZZ_EXAMPLES = int(os.environ.get("MONITOR_FUZZ_EXAMPLES", "10"))
ROLES = ("anonymous", "viewer", "operator", "admin")
STREAMS = {"/api/events"}


def _state(runtime: Any) -> tuple[Any, ...]:
    status = runtime.status()
    users = tuple((u.name, u.password_hash, u.disabled) for u in list_users(runtime.store))
    return status["active"], status["epoch"], status["paused"], users


@pytest.mark.parametrize("role", ROLES)
def test_it_answers_every_generated_request_as_documented(runtime, role, capsys):
    # limits high enough that fuzzing wrong credentials does not lock the roles out
    app = create_app(runtime, hasher=CHEAP_HASHER,
                     lockout=Lockout(pair_limit=10**6, ip_limit=10**6))
    client = TestClient(app, raise_server_exceptions=False)
    runtime.started = True  # /readyz answers 200 (503 is documented for a stopped monitor)
    schema = schemathesis.openapi.from_dict(document(app))
    tried = 0

    def check(case: Any) -> None:
        nonlocal tried
        tried += 1
        if isinstance(case.body, dict) and "csrf_token" in case.body and role != "anonymous":
            case.body["csrf_token"] = token(client, role)  # fields fuzzed, past the CSRF check
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=dict(SAME_ORIGIN))
        for unused in ("timeout", "allow_redirects", "verify", "cert"):
            kwargs.pop(unused, None)
        before = _state(runtime)
        response = client.request(**kwargs, auth=None if role == "anonymous" else auth(role),
                                  follow_redirects=False)
        where = f"{case.method} {case.formatted_path} as {role}"
        assert response.status_code < 500, f"{where}: {response.text[:300]}"
        assert_secure(response)
        if response.status_code >= 400 and case.path != "/logout":
            assert _state(runtime) == before, f"{where} was refused yet changed the state"
        # The forms also check what JSON Schema cannot state (a password's strength, two fields
        # that must match, a version that exists): a documented 422, so "schema-valid data
        # rejected" is no fault here. Every other check runs.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    # /api/events is a stream that lasts until its max age (tests/web/test_events.py covers it)
    operations = [op for op in (result.ok() for result in schema.get_all_operations())
                  if op.path not in STREAMS]
    for operation in operations:
        run = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                       suppress_health_check=list(HealthCheck))(
            given(case=operation.as_strategy())(check))
        run()
    with capsys.disabled():
        print(f"\nschemathesis as {role}: {tried} cases over {len(operations)} operations")
    assert tried >= len(operations)
