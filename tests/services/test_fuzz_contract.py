"""Schemathesis with every check against each book service's own OpenAPI document (built
in-process, whatever the service serves by default): 0 failures. The chaos token is valid, so
the chaos bodies are exercised too; faults are reset after each case and the CPU burner is a
fake (the process edge). Bounded: FUZZ_EXAMPLES per operation, no deadline."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.services.conftest import AUTH, VERSIONS

FUZZ_EXAMPLES = int(os.environ.get("MONITOR_FUZZ_EXAMPLES", "10"))


class IdleBurner:
    def start(self, seconds: float, workers: int) -> None:
        self.started = (seconds, workers)

    def stop(self) -> None:
        self.started = None


@pytest.mark.parametrize("version", VERSIONS)
def test_it_keeps_its_openapi_contract_under_fuzzing(build, version, capsys):
    app = build(version)
    app.state.service.burner = IdleBurner()
    client = TestClient(app, raise_server_exceptions=False)
    schema = schemathesis.openapi.from_dict(app.openapi())
    tried = 0

    def check(case: Any) -> None:
        nonlocal tried
        tried += 1
        headers = dict(AUTH) if case.path.startswith("/chaos") else {}
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
        for unused in ("timeout", "allow_redirects", "verify", "cert"):
            kwargs.pop(unused, None)
        try:
            response = client.request(**kwargs, follow_redirects=False)
            case.validate_response(response)
        finally:
            client.post("/chaos/reset", headers=AUTH)

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))(
            given(case=operation.as_strategy())(check))()
    with capsys.disabled():
        print(f"\nschemathesis on {version}: {tried} cases over {len(operations)} operations")
    assert tried >= len(operations)
