"""Book service v3: SQLite FTS5 index ranked by bm25."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.bookservice.app import create_app as _create_app
from services.v3.strategy import Fts5Search

VERSION = "v3"
DEFAULT_PORT = 8003
Strategy = Fts5Search


def create_app(*, chaos_token: str | None = None, **options: Any) -> FastAPI:
    """The v3 app; options are passed to services.bookservice.app.create_app."""
    return _create_app(VERSION, Strategy, chaos_token=chaos_token, **options)
