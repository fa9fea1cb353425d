"""What the web layer needs from the running monitor, as a typed protocol.

`monitor.runtime.Runtime` provides it; web tests may pass anything else that does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from monitor.actor import Actor
from monitor.config import Settings
from monitor.failover.operations import ActionResult
from monitor.failover.status import LatencySeries
from monitor.ops.metrics import Metrics
from monitor.recorder import Notice
from monitor.services import Actions, ServiceUnit
from monitor.storage.keys import Keys
from monitor.storage.store import Store


class MonitorPort(Actions, Protocol):
    """The running monitor; its own actions are the default service's (`actions(service)`
    gives another service's, raising monitor.services.UnknownService for an unknown name)."""

    settings: Settings
    keys: Keys
    store: Store
    metrics: Metrics
    checkpoint_path: Path
    clock: Callable[[], float]
    started: bool

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self, service: str | None = None) -> dict[str, Any]: ...

    @property
    def services(self) -> dict[str, ServiceUnit]: ...

    def actions(self, service: str | None = None) -> Actions: ...

    def latency_series(self, minutes: int = 15) -> LatencySeries: ...

    async def arecord(self, actor: Actor, action: str, *, target: str = "",
                      params: dict[str, Any] | None = None, outcome: str = "ok",
                      reason: str = "", evidence: list[Any] | None = None,
                      notice: Notice | None = None) -> None: ...

    async def rollout_action(self, actor: Actor, op: str,
                             params: dict[str, Any]) -> ActionResult: ...
