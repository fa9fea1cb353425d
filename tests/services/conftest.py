"""Fixtures for the book service tests: apps of every version with fake edges."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
from fastapi import FastAPI

VERSIONS = ("v1", "v2", "v3")
TOKEN = "test-chaos-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class SleepRecorder:
    """Stands in for asyncio.sleep: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Dice:
    """A ``rand`` that always rolls the same value."""

    def __init__(self, value: float = 0.5) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def dice() -> Dice:
    return Dice()


@pytest.fixture
def exits() -> list[int]:
    return []


@pytest.fixture
def build(clock, sleeps, dice, exits) -> Callable[..., FastAPI]:
    """``build(version="v2", token=TOKEN, **options)``: an app whose clock, sleep, dice and
    process exit are the fakes above."""

    def make(version: str = "v2", *, token: str | None = TOKEN, **options) -> FastAPI:
        module = importlib.import_module(f"services.{version}")
        options = {
            "now": clock,
            "sleep": sleeps,
            "rand": dice,
            "exit_process": exits.append,
        } | options
        return module.create_app(chaos_token=token, **options)

    return make
