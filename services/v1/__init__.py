"""Book service v1: plain substring matching."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.bookservice.app import create_app as _create_app
from services.v1.strategy import SubstringSearch

VERSION = "v1"
DEFAULT_PORT = 8001
Strategy = SubstringSearch


def create_app(*, chaos_token: str | None = None, **options: Any) -> FastAPI:
    """The v1 app; options are passed to services.bookservice.app.create_app."""
    return _create_app(VERSION, Strategy, chaos_token=chaos_token, **options)
