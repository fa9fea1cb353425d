"""Book service v2: token index ranked by weighted tf-idf."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.bookservice.app import create_app as _create_app
from services.v2.strategy import TokenRankedSearch

VERSION = "v2"
DEFAULT_PORT = 8002
Strategy = TokenRankedSearch


def create_app(*, chaos_token: str | None = None, **options: Any) -> FastAPI:
    """The v2 app; options are passed to services.bookservice.app.create_app."""
    return _create_app(VERSION, Strategy, chaos_token=chaos_token, **options)
