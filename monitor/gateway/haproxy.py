"""HAProxy as the data plane, driven through its Runtime API (the stats socket).

The backend holds one server per version, named like the version, in priority order, with
``balance first``: HAProxy sends every request to the first server that is ``ready`` and
up. The monitor makes that the active version by putting the versions before it in ``maint``;
the UP versions after it stay ``ready``, so HAProxy's retries (``option redispatch``) can carry
a request to the next one while the monitor has not yet decided. DOWN versions are ``maint``.

The pure part: :func:`parse_state` reads ``show servers state``; :func:`desired` says which
state each server should have for a route; :func:`drift` lists the differences. The I/O part:
:class:`RuntimeAPI` sends one command per connection and reads the answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from monitor.gateway.route import Route

MAINT_FLAGS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, resolver, hostname
DRAIN_FLAGS = 0x08 | 0x10
TIMEOUT_S = 1.0
MAX_ANSWER = 1024 * 1024


class Admin(StrEnum):
    """The administrative state of a server, as ``set server ... state`` takes it."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


class HAProxyError(Exception):
    """The Runtime API could not be reached or refused a command."""


@dataclass(frozen=True)
class Server:
    name: str
    id: int
    admin: Admin
    up: bool  # HAProxy's own view (its health checks), shown but never decisive
    weight: int


def parse_state(text: str) -> dict[str, Server]:
    """The servers of one backend from ``show servers state <backend>``."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("# ")), None)
    if header is None:
        raise HAProxyError(f"unexpected answer to show servers state: {text[:200]!r}")
    columns = header[2:].split()
    try:
        at = {name: columns.index(name) for name in
              ("srv_id", "srv_name", "srv_op_state", "srv_admin_state", "srv_uweight")}
    except ValueError as exc:
        raise HAProxyError(f"show servers state lacks a column: {exc}") from None
    servers: dict[str, Server] = {}
    for line in lines:
        if line.startswith("#") or len(line.split()) < len(columns) - 8:
            continue
        fields = line.split()
        try:
            flags = int(fields[at["srv_admin_state"]])
            admin = Admin.MAINT if flags & MAINT_FLAGS else Admin.DRAIN if flags & DRAIN_FLAGS \
                else Admin.READY
            server = Server(name=fields[at["srv_name"]], id=int(fields[at["srv_id"]]),
                            admin=admin, up=fields[at["srv_op_state"]] == "2",
                            weight=int(fields[at["srv_uweight"]]))
        except (IndexError, ValueError):
            continue
        servers[server.name] = server
    return servers


def desired(route: Route, servers: dict[str, Server]) -> dict[str, Admin]:
    """Which admin state each version's server should have for ``route``: the active one and
    the route's fallbacks that come after it in server order ``ready``, every other version
    ``maint``. Servers that are not versions of the route are left alone."""
    active = servers.get(route.active)
    wanted: dict[str, Admin] = {}
    for name, server in servers.items():
        if name not in route.urls:
            continue
        after_active = active is not None and server.id > active.id
        ready = name == route.active or (name in route.fallbacks and after_active)
        wanted[name] = Admin.READY if ready else Admin.MAINT
    return wanted


def drift(wanted: dict[str, Admin], servers: dict[str, Server]) -> dict[str, tuple[str, str]]:
    """Server -> (wanted, found) for every server not in its wanted state."""
    return {name: (state.value, servers[name].admin.value) for name, state in wanted.items()
            if name in servers and servers[name].admin != state}


class RuntimeAPI:
    """One command per connection on HAProxy's stats socket (``level admin``)."""

    def __init__(self, path: str, *, timeout: float = TIMEOUT_S) -> None:
        self.path = path
        self.timeout = timeout

    async def command(self, line: str) -> str:
        if "\n" in line or ";" in line:
            raise ValueError("one command per call")
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self.path)
                try:
                    writer.write(line.encode() + b"\n")
                    await writer.drain()
                    answer = await reader.read(MAX_ANSWER)
                    while chunk := await reader.read(MAX_ANSWER):
                        answer += chunk
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            raise HAProxyError(f"HAProxy Runtime API at {self.path}: {exc!r}") from None
        return answer.decode("utf-8", "replace")

    async def servers(self, backend: str) -> dict[str, Server]:
        servers = parse_state(await self.command(f"show servers state {backend}"))
        if not servers:
            raise HAProxyError(f"HAProxy has no servers in backend {backend!r}")
        return servers

    async def set_state(self, backend: str, server: str, state: Admin) -> None:
        answer = (await self.command(f"set server {backend}/{server} state {state.value}"))
        if answer.strip():  # HAProxy answers nothing on success
            raise HAProxyError(f"set server {backend}/{server} state {state.value}: "
                               f"{answer.strip()[:200]}")
