"""Who did something: the one type every audit row is written for."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import TypedDict


class AuditFields(TypedDict):
    actor: str
    role: str
    source_ip: str
    user_agent: str
    request_id: str


@dataclass(frozen=True)
class Actor:
    """An operator behind a request, a CLI user, or the monitor itself."""

    name: str
    role: str
    source_ip: str = ""
    user_agent: str = ""
    request_id: str = ""

    def audit_fields(self) -> AuditFields:
        """The who-columns of an audit row: `audit.append(..., **actor.audit_fields())`."""
        return {"actor": self.name, "role": self.role, "source_ip": self.source_ip,
                "user_agent": self.user_agent, "request_id": self.request_id}


SYSTEM = Actor("monitor", "system")


def cli_actor() -> Actor:
    """The local account running a `python -m monitor` command."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Actor(name=f"cli:{name}", role="admin")
