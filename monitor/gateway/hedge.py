"""Hedged requests ("The Tail at Scale"): the first attempt, and a second one if it is slow.

The first attempt runs inline in the request's own task: no extra task, future or wait set
for the usual case of an answer before the hedge delay (this is the gateway's hot path). A
timer launches the second attempt as a task only once the delay has passed. If that hedge
succeeds while the first is still waiting, the hedge's callback cancels the request's task
to end the first attempt (which closes its connection and gives its slot back); the race
takes that cancellation back (``uncancel``) only when it was its own, so a cancellation from
outside (shutdown) still ends the request.

:func:`race` returns (index of the attempt whose outcome is used, its start, that outcome,
failures of the other attempt to report). When both fail, the hedge (index 1) is the
attempt, so the caller's next retry goes to the third backend, never to one already tried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from monitor.gateway.calls import Outcome
from monitor.gateway.retry import Failure


async def race(attempt: Callable[[int], tuple[str, Awaitable[Outcome]]], delay: float,
               clock: Callable[[], float], drop: Callable[[Outcome], Awaitable[None]]
               ) -> tuple[int, float, Outcome, list[tuple[str, Failure]]]:
    """``attempt(i)`` names the version of backend ``i`` (0 or 1) and starts an attempt on
    it; ``delay`` is the hedge delay; ``drop`` closes the response of an unused outcome."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    version, first = attempt(0)
    started = [clock(), 0.0]
    hedge: asyncio.Task[Outcome] | None = None
    hedge_version = ""
    settled = False  # the first attempt has its outcome
    won = False  # the hedge succeeded first and cancelled the first attempt

    def hedge_done(task: asyncio.Task[Outcome]) -> None:
        nonlocal won
        if not settled and not task.cancelled() and task.exception() is None \
                and task.result()[2] is None:
            won = True
            me.cancel()

    def launch() -> None:
        nonlocal hedge, hedge_version
        started[1] = clock()
        hedge_version, second = attempt(1)
        hedge = loop.create_task(_run(second))
        hedge.add_done_callback(hedge_done)

    timer = loop.call_later(delay, launch)
    try:
        try:
            outcome = await first
        except asyncio.CancelledError:
            if won and me.uncancel() == 0 and hedge is not None:
                return 1, started[1], hedge.result(), []
            raise
        finally:
            settled = True
            timer.cancel()
        if hedge is None:
            return 0, started[0], outcome, []
        if outcome[2] is None:  # the first answered after all
            lost = []
            if hedge.done() and not hedge.cancelled() and hedge.exception() is None:
                other = hedge.result()
                if other[2] is not None:
                    lost.append((hedge_version, other[2]))
                await drop(other)
            return 0, started[0], outcome, lost
        assert outcome[2] is not None
        lost = [(version, outcome[2])]
        await drop(outcome)
        return 1, started[1], await hedge, lost
    finally:
        if hedge is not None and not hedge.done():
            hedge.cancel()
            await asyncio.gather(hedge, return_exceptions=True)


async def _run(attempt: Awaitable[Outcome]) -> Outcome:
    return await attempt
