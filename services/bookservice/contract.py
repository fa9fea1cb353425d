"""The service's OpenAPI document, made true to every answer the service gives.

FastAPI documents 200 and 422; the service also answers 400 (a body that is not JSON),
404 (unknown book), 401/403 (chaos
without the right token), 503 (/health while not ready, or a fault answering early), and 500
while the `errors` fault is injected (on purpose). Schemathesis holds the service to this
document (tests/services/test_fuzz_contract.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

DETAIL = {"application/json": {"schema": {"type": "object",
                                           "properties": {"detail": {}}}}}
FAULTS = {
    "500": {"description": "The errors fault is injected (chaos)", "content": DETAIL},
    "503": {"description": "Not ready, or a fault answered early (chaos)", "content": DETAIL},
}
TOKEN = {
    "401": {"description": "Missing or wrong chaos bearer token", "content": DETAIL},
    "403": {"description": "Chaos disabled (no token configured)", "content": DETAIL},
}
NOT_FOUND = {"404": {"description": "No book with this id", "content": DETAIL}}
UNPARSABLE = {"400": {"description": "The body is not JSON", "content": DETAIL}}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the complete document."""
    derived = app.openapi
    app.openapi = lambda: document(app, derived())  # type: ignore[method-assign]


def document(app: FastAPI, spec: dict[str, Any]) -> dict[str, Any]:
    if getattr(app.state, "contract_done", False):
        return spec
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.update(TOKEN if path.startswith("/chaos") else FAULTS)
            if path == "/books/{book_id}":
                responses.update(NOT_FOUND)
            if "requestBody" in operation:
                responses.update(UNPARSABLE)
    app.state.contract_done = True
    return spec
