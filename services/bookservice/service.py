"""One running book service: its catalog, search strategy, faults and injected edges."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import psutil

from services.bookservice.burner import CpuBurner
from services.bookservice.catalog import Catalog
from services.bookservice.faults import FaultState
from services.bookservice.search import SearchStrategy


@dataclass
class Service:
    version: str
    catalog: Catalog
    strategy: SearchStrategy
    frequencies: Mapping[str, int]
    chaos_token: str | None
    now: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rand: Callable[[], float]
    exit_process: Callable[[int], None]
    started_at: float
    faults: FaultState = field(default_factory=FaultState)
    burner: CpuBurner = field(default_factory=CpuBurner)
    process: psutil.Process = field(default_factory=psutil.Process)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_release(self) -> None:
        """Park a hung request until the next reset."""
        await self._release.wait()

    def reset(self) -> None:
        """Clear every fault, stop CPU load, restore the catalog and wake hung requests."""
        self.faults.clear()
        self.burner.stop()
        self.catalog.restore()
        released, self._release = self._release, asyncio.Event()
        released.set()
