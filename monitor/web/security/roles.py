"""The one table of who may use which route. Deny by default: a route missing here is refused.

Roles rank viewer < operator < admin. `public` needs no credentials; `scrape` accepts a viewer
or the bearer scrape token (MONITOR_SCRAPE_TOKEN) for Prometheus.
"""

from __future__ import annotations

ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}
PUBLIC = "public"
SCRAPE = "scrape"

ROUTE_ROLES: dict[str, str] = {
    # liveness and readiness for orchestrators, static assets (no data in them)
    "/healthz": PUBLIC,
    "/readyz": PUBLIC,
    "/static": PUBLIC,
    "/metrics": SCRAPE,
    # pages
    "/": "viewer",
    "/partials/chart": "viewer",
    "/partials/rollout": "viewer",
    "/audit": "viewer",
    "/health-log": "viewer",
    "/notices": "viewer",
    "/incidents": "viewer",
    "/charts": "viewer",
    "/incidents/{incident_id}": "viewer",
    "/users": "admin",
    "/spec": "viewer",
    # JSON API, mirroring the pages
    "/api/status": "viewer",
    "/api/services": "viewer",
    "/api/audit": "viewer",
    "/api/probes": "viewer",
    "/api/notices": "viewer",
    "/api/audit/verify": "admin",
    "/api/users": "admin",
    "/api/spec": "viewer",
    "/api/events": "viewer",
    "/api/apply": "admin",
    # actions (POST only, CSRF checked)
    "/actions/chaos/{version}/{fault}": "operator",
    "/actions/failover": "operator",
    "/actions/failback": "operator",
    "/actions/pause": "operator",
    "/actions/resume": "operator",
    "/actions/rollout/{op}": "operator",  # start, promote, pause, resume, abort
    "/logout": "viewer",
    # every user's own password (GET the form, POST it with CSRF and the current password)
    "/account/password": "viewer",
}

# A request that matches no route still needs a viewer, so anonymous callers cannot map the app.
UNMATCHED = "viewer"


def allows(role: str, required: str) -> bool:
    """Whether a principal with `role` may use a route that requires `required`."""
    if required == PUBLIC:
        return True
    needed = ROLE_RANK["viewer"] if required == SCRAPE else ROLE_RANK.get(required)
    if needed is None:
        return False
    return ROLE_RANK.get(role, 0) >= needed


def can(role: str, needed: str) -> bool:
    """For templates: show operator controls only to operators and admins."""
    return ROLE_RANK.get(role, 0) >= ROLE_RANK[needed]
