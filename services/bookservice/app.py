"""The FastAPI app factory shared by v1, v2 and v3."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.bookservice.books import books_router
from services.bookservice.catalog import DATA_FILE, Catalog
from services.bookservice.chaos import chaos_router
from services.bookservice.health import health_router
from services.bookservice.middleware import FaultMiddleware, VersionHeaderMiddleware
from services.bookservice.search import StrategyFactory, document_frequencies
from services.bookservice.service import Service


def create_app(
    version: str,
    strategy: StrategyFactory,
    *,
    chaos_token: str | None,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] | None = None,
    exit_process: Callable[[int], None] = os._exit,
    catalog_path: Path | str = DATA_FILE,
    docs: bool = False,
) -> FastAPI:
    """Load the catalog, build the version's search index and wire routes and fault handling.

    ``now``, ``sleep``, ``rand`` and ``exit_process`` are the service's edges (clock, latency,
    error dice, process exit); tests pass fakes. An empty ``chaos_token`` disables chaos.
    ``docs`` serves /docs and /openapi.json (off unless asked: ``SERVICE_DOCS=1``).
    """
    catalog = Catalog.from_file(catalog_path)
    service = Service(
        version=version,
        catalog=catalog,
        strategy=strategy(catalog.pristine),
        frequencies=document_frequencies(catalog.pristine),
        chaos_token=chaos_token or None,
        now=now,
        sleep=sleep,
        rand=rand or random.Random().random,
        exit_process=exit_process,
        started_at=now(),
    )
    service.process.cpu_percent(interval=None)  # prime: the first reading is always 0.0

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.burner.stop()

    app = FastAPI(title=f"Book service {version}", version=version, lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.service = service
    app.include_router(books_router(service))
    app.include_router(health_router(service))
    app.include_router(chaos_router(service))
    app.add_middleware(FaultMiddleware, service=service)
    app.add_middleware(VersionHeaderMiddleware, version=version)
    return app
