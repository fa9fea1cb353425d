"""Progress of long CLI work (`audit verify --full`, `audit archive`, `backup`).

On a terminal: a rich progress bar with the rate and the time left. Otherwise (a log, a pipe,
cron): plain lines on the same stream, one per PLAIN_STEP of the work and one at the end, e.g.
`verify: 250000/1000000 (25%), 12.5 s elapsed, about 37.5 s left`. Time is passed in (a
clock), so the lines are testable. Output goes to stderr: stdout stays the result (`--json`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

PLAIN_STEP = 0.10  # a plain line per tenth of the work


def estimate(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the rate so far; None before there is a rate."""
    if done <= 0 or elapsed <= 0 or total <= done:
        return None if done <= 0 or elapsed <= 0 else 0.0
    return elapsed * (total - done) / done


class PlainProgress:
    """Plain lines: `what: done/total (pct), elapsed, about N s left`."""

    def __init__(self, what: str, stream: TextIO, clock: Callable[[], float]) -> None:
        self.what, self.stream, self.clock = what, stream, clock
        self.started = clock()
        self.expected = 0
        self.done = 0
        self._next_line = PLAIN_STEP

    def total(self, rows: int) -> None:
        self.expected += max(0, rows)

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.expected and self.done / self.expected >= self._next_line:
            self._line()
            self._next_line = (int(self.done / self.expected / PLAIN_STEP) + 1) * PLAIN_STEP

    def finish(self) -> None:
        elapsed = self.clock() - self.started
        print(f"{self.what}: done, {self.done} in {elapsed:.1f} s", file=self.stream, flush=True)

    def _line(self) -> None:
        elapsed = self.clock() - self.started
        expected = max(self.expected, self.done)
        left = estimate(self.done, expected, elapsed)
        tail = f", about {left:.1f} s left" if left is not None else ""
        print(f"{self.what}: {self.done}/{expected} ({100 * self.done // expected}%), "
              f"{elapsed:.1f} s elapsed{tail}", file=self.stream, flush=True)


class BarProgress:
    """A rich bar with an estimate, on a terminal."""

    def __init__(self, what: str, stream: TextIO) -> None:
        self._bar = RichProgress("[progress.description]{task.description}", BarColumn(),
                                 MofNCompleteColumn(), TaskProgressColumn(),
                                 TimeRemainingColumn(), console=Console(file=stream),
                                 transient=False)
        self._task = self._bar.add_task(what, total=0)
        self._bar.start()

    def total(self, rows: int) -> None:
        task = self._bar.tasks[0]
        self._bar.update(self._task, total=(task.total or 0) + max(0, rows))

    def advance(self, rows: int) -> None:
        self._bar.advance(self._task, rows)

    def finish(self) -> None:
        self._bar.stop()


def progress_for(what: str, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> PlainProgress | BarProgress:
    out = stream or sys.stderr
    return BarProgress(what, out) if out.isatty() else PlainProgress(what, out, clock)
