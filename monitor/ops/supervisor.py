"""Spawn and watch the local book services, like systemd `Restart=on-failure`.

Each child runs in its own process group (session), so stopping it also stops anything it
spawned. A child that exits on its own, whatever its exit code (a chaos `crash` uses
`os._exit`), is restarted after an exponential back-off; a child that keeps dying (too many
restarts within a window, systemd's StartLimitBurst) is left down. Every restart and every
give-up is reported through `on_event(name, kind, reason)` with kind "restart" or "gave_up";
the caller turns those into audit rows and metrics. `stop()` never restarts anything.

The restart decision is the pure function `next_restart`; the `Supervisor` is the I/O shell.

With a `pid_dir`, children outlive the monitor (no parent-death signal) and a restarted
monitor adopts the ones still running through their pid files (see `monitor.ops.pidfiles`);
without one, the kernel stops the children when the monitor dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from monitor.ops import pidfiles

PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)

LOG_ROTATE_BYTES = 10 * 1024 * 1024
GROUP_EXIT_WAIT = 1.0  # seconds to let a SIGKILLed group disappear


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential back-off `base * 2**n` capped at `max`, where n counts recent restarts.

    Restarts older than `window` seconds are forgotten, so a child that ran steadily for a
    while restarts quickly again. At `give_up_after` restarts within the window the child is
    left down.
    """

    backoff_base: float = 0.5
    backoff_max: float = 30.0
    give_up_after: int = 5
    window: float = 60.0


@dataclass(frozen=True)
class RestartDecision:
    give_up: bool
    delay: float = 0.0
    attempt: int = 0          # 1 for the first restart within the window


def next_restart(restarts: list[float] | tuple[float, ...], now: float,
                 policy: RestartPolicy) -> RestartDecision:
    """Decide what to do about a child that just exited at `now`.

    `restarts` are the times of earlier restarts of this child (any order; old ones ignored).
    """
    recent = sum(1 for at in restarts if now - at < policy.window)
    if recent >= policy.give_up_after:
        return RestartDecision(give_up=True, attempt=recent)
    delay = min(policy.backoff_base * 2 ** recent, policy.backoff_max)
    return RestartDecision(give_up=False, delay=delay, attempt=recent + 1)


def describe_exit(returncode: int | None) -> str:
    """'exited with code 1' or 'killed by signal SIGKILL'."""
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"killed by signal {name}"
    return f"exited with code {returncode}"


@dataclass
class _Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    restart_times: list[float] = field(default_factory=list)
    restarts: int = 0
    given_up: bool = False
    last_exit: str | None = None
    task: asyncio.Task[None] | None = None
    log_file: IO[bytes] | None = None
    adopted: int | None = None  # pid of a child a previous monitor started, still running

    @property
    def running(self) -> bool:
        return self.adopted is not None or (
            self.process is not None and self.process.returncode is None)

    @property
    def pid(self) -> int | None:
        if self.adopted is not None:
            return self.adopted
        return self.process.pid if self.process is not None and self.running else None


class Supervisor:
    """Keeps a set of child processes running; see the module docstring."""

    def __init__(
        self,
        specs: list[ChildSpec],
        *,
        on_event: Callable[[str, str, str], None],
        clock: Callable[[], float] = time.monotonic,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        give_up_after: int = 5,
        give_up_window: float = 60.0,
        log_dir: Path | None = None,
        pid_dir: Path | None = None,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must differ, got {names}")
        self.policy = RestartPolicy(backoff_base, backoff_max, give_up_after, give_up_window)
        self._children = {s.name: _Child(s) for s in specs}
        self._on_event = on_event
        self._clock = clock
        self._log_dir = log_dir
        self._pid_dir = pid_dir
        self._stopping = asyncio.Event()
        self._started = False
        self._preexec = death_signal_hook()

    # Public API ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn every child and start one watcher task per child."""
        if self._started:
            raise RuntimeError("supervisor already started")
        self._started = True
        self._stopping.clear()
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        for child in self._children.values():
            child.given_up = False
            if self._pid_dir is not None and (pid := pidfiles.adoptable(
                    self._pid_dir, child.spec.name, child.spec.argv)) is not None:
                child.adopted = pid
                log.info("adopted %s", child.spec.name, extra={"version": child.spec.name,
                                                               "pid": pid})
                continue
            await self._spawn(child)
        for child in self._children.values():
            name = f"supervise-{child.spec.name}"
            child.task = asyncio.create_task(self._watch(child), name=name)

    async def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM every child's process group, wait up to `timeout`, SIGKILL what is left.

        Once a child's main process has exited, whatever remains of its group is killed, so
        no orphan keeps a port bound.
        """
        self._stopping.set()
        children = list(self._children.values())
        # Only processes not yet reaped: a reaped pid may already belong to someone else.
        running = [c.process for c in children if c.process is not None and c.running]
        adopted = [c.adopted for c in children if c.adopted is not None]
        for pid in [p.pid for p in running] + adopted:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        await asyncio.gather(*(self._reap(p, deadline) for p in running),
                             *(_reap_adopted(pid, deadline) for pid in adopted))
        for child in children:
            child.adopted = None
            if self._pid_dir is not None:
                pidfiles.remove(self._pid_dir, child.spec.name)
        for child in children:
            if child.process is not None and child.process.returncode is not None:
                child.last_exit = describe_exit(child.process.returncode)
        # Watchers notice the stop flag and return; one caught mid-spawn reaps its new child.
        tasks = [c.task for c in children if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for child in children:
            child.task = None
            self._close_log(child)
        self._started = False

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "pid": c.pid,
                "running": c.running,
                "restarts": c.restarts,
                "given_up": c.given_up,
                "last_exit": c.last_exit,
            }
            for name, c in self._children.items()
        }

    # Internals ----------------------------------------------------------------------------
    async def _watch(self, child: _Child) -> None:
        name = child.spec.name
        while not self._stopping.is_set():
            if child.adopted is not None:
                await pidfiles.wait_exit(child.adopted)
                if self._stopping.is_set():
                    return
                _signal_group(child.adopted, signal.SIGKILL)
                child.adopted = None
                exit_reason = child.last_exit = "exited (adopted: exit code unknown)"
            elif child.process is None:
                exit_reason = child.last_exit or "failed to start"
            else:
                returncode = await child.process.wait()
                if self._stopping.is_set():
                    return
                # Leftovers of the dead child (its own children) must not keep ports bound.
                _signal_group(child.process.pid, signal.SIGKILL)
                exit_reason = describe_exit(returncode)
                child.last_exit = exit_reason
            if self._pid_dir is not None:
                pidfiles.remove(self._pid_dir, name)
            decision = next_restart(child.restart_times, self._clock(), self.policy)
            if decision.give_up:
                child.given_up = True
                self._emit(name, "gave_up", f"{exit_reason}; {decision.attempt} restarts within "
                           f"{self.policy.window:g}s, leaving it down")
                return
            self._emit(name, "restart", f"{exit_reason}; restart {decision.attempt} "
                       f"in {decision.delay:.1f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), decision.delay)
            if self._stopping.is_set():
                return
            child.restart_times = [t for t in child.restart_times
                                   if self._clock() - t < self.policy.window]
            child.restart_times.append(self._clock())
            child.restarts += 1
            await self._spawn(child)
            if self._stopping.is_set():  # stop() came while we were spawning
                if child.process is not None:
                    await self._reap(child.process, time.monotonic())
                return

    async def _spawn(self, child: _Child) -> None:
        spec = child.spec
        out = self._output(child)
        try:
            child.process = await asyncio.create_subprocess_exec(
                *spec.argv,
                env={**child_environment(), **spec.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=None if self._pid_dir is not None else self._preexec,
            )
            if self._pid_dir is not None:
                pidfiles.write(self._pid_dir, spec.name, child.process.pid, spec.argv)
            log.info("started %s", spec.name, extra={"version": spec.name,
                                                      "pid": child.process.pid})
        except OSError as exc:
            child.process = None
            child.last_exit = f"failed to start: {exc}"
            log.error("cannot start %s: %s", spec.name, exc, extra={"version": spec.name})

    @staticmethod
    async def _reap(process: asyncio.subprocess.Process, deadline: float) -> None:
        """Wait for `process` until `deadline`, then SIGKILL its group (it was running)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), max(0.0, deadline - time.monotonic()))
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()
        # kill() returns before the kernel has finished the group off; wait (briefly) so
        # that no process of the group outlives stop() and ports are free again.
        give_up_at = time.monotonic() + GROUP_EXIT_WAIT
        while _group_alive(process.pid) and time.monotonic() < give_up_at:
            await asyncio.sleep(0.02)

    def _emit(self, name: str, kind: str, reason: str) -> None:
        log.warning("%s %s: %s", name, kind, reason,
                    extra={"version": name, "event": f"supervisor_{kind}"})
        try:
            self._on_event(name, kind, reason)
        except Exception:  # a failing listener must not stop supervision
            log.exception("supervisor event listener failed")

    def _output(self, child: _Child) -> IO[bytes] | int | None:
        """Child output goes to `<log_dir>/<name>.log` (rotated once at 10 MB) or our stderr."""
        if self._log_dir is None:
            try:
                return sys.stderr.fileno()
            except (AttributeError, OSError, ValueError):
                return None
        path = self._log_dir / f"{child.spec.name}.log"
        self._close_log(child)
        if path.exists() and path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_suffix(".log.1"))
        child.log_file = open(path, "ab")  # kept open while the child runs
        return child.log_file

    @staticmethod
    def _close_log(child: _Child) -> None:
        if child.log_file is not None:
            child.log_file.close()
            child.log_file = None


async def _reap_adopted(pid: int, deadline: float) -> None:
    """Like `Supervisor._reap` for a child a previous monitor started (not ours to wait())."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pidfiles.wait_exit(pid), max(0.0, deadline - time.monotonic()))
    _signal_group(pid, signal.SIGKILL)
    give_up_at = time.monotonic() + GROUP_EXIT_WAIT
    while _group_alive(pid) and time.monotonic() < give_up_at:
        await asyncio.sleep(0.02)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while a process of the group still runs (zombies awaiting their reaper don't)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def child_environment() -> dict[str, str]:
    """The monitor's environment without its own settings: a service must not inherit the
    master key or the SMTP password (it gets its chaos token through `ChildSpec.env`)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("MONITOR_", "SERVICE_"))}


def death_signal_hook() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the kernel send SIGTERM to the child when the monitor dies,
    even by SIGKILL, so no service outlives it holding its port (Linux; None elsewhere).

    `prctl` is looked up here, in the parent: the child of a threaded process may only do
    async-signal-safe work before exec, and loading a library (`dlopen`) is not."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong)
    prctl.restype = ctypes.c_int
    option, sig = PR_SET_PDEATHSIG, int(signal.SIGTERM)

    def set_death_signal() -> None:
        prctl(option, sig)
    return set_death_signal
