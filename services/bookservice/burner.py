"""Real CPU load for the ``cpu`` fault: busy threads for a bounded time.

Each step is one long C-level call that holds the GIL, so the event loop really waits and
request latency really rises, besides the process's CPU use.
"""

from __future__ import annotations

import threading
import time

_CHUNK = 300_000


def _spin(deadline: float, stop: threading.Event) -> None:
    while not stop.is_set() and time.monotonic() < deadline:
        sum(range(_CHUNK))


class CpuBurner:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, seconds: float, workers: int) -> None:
        """Replace any running burn with ``workers`` threads spinning for ``seconds``."""
        self.stop()
        self._stop = threading.Event()
        deadline = time.monotonic() + seconds
        self._threads = [
            threading.Thread(
                target=_spin, args=(deadline, self._stop), daemon=True, name=f"cpu-fault-{n}"
            )
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)
