"""The dashboard's OpenAPI document, made true to what the access gate and forms really do.

FastAPI derives parameters and 200/422 from the routes; it cannot see the access gate (401,
403, 429 before any route), the Host allow-list (400), the body limit (413) or the forms that
routes read themselves. This adds them from the same tables the server uses (roles.ROUTE_ROLES,
forms.FAULTS), so a fuzzer (tests/web/test_fuzz.py) holds the server to the document. The
document is not served (`openapi_url=None`): it is a contract for tests and integrators.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from monitor.web.forms import FAULTS
from monitor.web.security.roles import PUBLIC, ROUTE_ROLES

_DETAIL = {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}
_STRING = {"schema": {"type": "string"}}
# JSON for /api/* (and clients that accept it), a page or a line of text for browsers
ERROR = {"content": {"application/json": _DETAIL, "text/html": _STRING, "text/plain": _STRING}}
HTML = {"content": {"text/html": _STRING, "application/json": _DETAIL}}
TEXT = {"content": {"text/plain": _STRING}}
REFUSALS = {
    "400": {"description": "Host header not allowed (MONITOR_ALLOWED_HOSTS)", **TEXT},
    "413": {"description": "Request body too large", **ERROR},
}
AUTH_REFUSALS = {
    "401": {"description": "Credentials missing or wrong", **ERROR},
    "403": {"description": "The user's role does not allow this (audited)", **ERROR},
    "429": {"description": "Too many failed logins from this address (Retry-After)", **ERROR},
}
_SERVICE = {"service": {"type": "string"}}  # the service acted on; empty: the default one
FORM_FIELDS: dict[str, dict[str, Any]] = {
    "/actions/failover": {"target": {"type": "string"}, "reason": {"type": "string"},
                          "force": {"type": "string"}, **_SERVICE},
    "/actions/failback": {"reason": {"type": "string"}, **_SERVICE},
    "/actions/pause": {"reason": {"type": "string"}, **_SERVICE},
    "/actions/resume": {"reason": {"type": "string"}, **_SERVICE},
    "/logout": {},
    "/account/password": {"current_password": {"type": "string"},
                          "new_password": {"type": "string"},
                          "confirm_password": {"type": "string"}},
    "/actions/chaos/{version}/{fault}": {
        **_SERVICE,
        **{param.name: {"type": "string"} for params in FAULTS.values() for param in params}},
}
ACTION_ANSWERS = {
    "303": {"description": "Done (or refused by the monitor): back to the overview with the "
                           "outcome"},
    "422": {"description": "A form field is invalid; nothing changed (audited)", **HTML},
}


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every answer the server can give (cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = app.openapi()
    for path, operations in spec["paths"].items():
        role = ROUTE_ROLES.get(path)
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.update(REFUSALS)
            if "422" in responses:  # our handler: {"detail": "Invalid input: ..."} or a page
                responses["422"] = {"description": "Invalid input; nothing changed", **ERROR}
            if role != PUBLIC:
                responses.update(AUTH_REFUSALS)
            if method == "post" and path in FORM_FIELDS:
                _form(operation, path)
            if path == "/metrics":
                responses["200"] = {"description": "Prometheus text exposition format",
                                    "content": {"text/plain": _STRING}}
            if path == "/api/events":
                responses["200"] = {"description": "Server-Sent Events (status changes)",
                                    "content": {"text/event-stream": {"schema": {}}}}
            if path == "/readyz":
                responses["503"] = {"description": "Not ready: not started or the database "
                                                   "refuses writes", **ERROR}
            if path == "/logout":
                responses.pop("200", None)
                responses["401"] = {"description": "Logged out (Clear-Site-Data)", **TEXT}
    app.openapi_schema = spec
    return spec


def _form(operation: dict[str, Any], path: str) -> None:
    properties = {"csrf_token": {"type": "string"}, **FORM_FIELDS[path]}
    operation["requestBody"] = {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": properties, "required": ["csrf_token"]}}}}
    responses = operation["responses"]
    if path == "/account/password":
        responses["422"] = ACTION_ANSWERS["422"]
        responses["200"] = {"description": "The password page (changed, or why not)", **HTML}
        return
    if path != "/logout":
        responses.pop("200", None)
        responses.update(ACTION_ANSWERS)
