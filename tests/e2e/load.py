"""A bounded GET load through the gateway, in background threads, recording every answer."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

MAX_REQUESTS = 200_000


@dataclass
class Load:
    url: str
    workers: int = 4
    time_limit: float = 120.0
    header: str = "x-served-by"  # who answered: the gateway's header, or the service's own
    path: str = "/books"  # another service's book API through the gateway: /NAME/books
    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (at, status, by)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.time_limit
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline \
                    and len(self.answers) < MAX_REQUESTS:
                try:
                    answer = client.get(self.path, params={"q": "whale", "limit": 2})
                    self.answers.append((time.monotonic(), answer.status_code,
                                         answer.headers.get(self.header, "")))
                    if answer.status_code != 200:
                        self.errors.append(f"{answer.status_code} {answer.text[:120]}")
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def count_after(self, moment: float) -> int:
        return sum(1 for at, _, _ in list(self.answers) if at > moment)

    def wait_for_answers(self, count: int, *, after: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count_after(after) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} answers in {timeout}s; "
                                     f"errors: {self.errors[:5]}")
            time.sleep(0.05)
