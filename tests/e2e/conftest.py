"""Fixtures of the end-to-end tests: real processes on 127.0.0.1, free ports, stopped by PID.
The process helpers themselves live in bench/processes.py (the benchmarks use them too)."""

from __future__ import annotations

import pytest

from bench.processes import running_services

TOKEN = "e2e-chaos-token-0123456789abcdef-xyz"


@pytest.fixture
def services():
    """Real v1, v2 and v3 on free ports accepting chaos with TOKEN: version -> base URL."""
    with running_services(TOKEN) as urls:
        yield urls
