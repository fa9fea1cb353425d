"""A restarted supervisor adopts the children a dead one left running (pid files)."""

from __future__ import annotations

import json
import os
import signal
import sys

import psutil
import pytest

from monitor.ops import pidfiles
from monitor.ops.supervisor import ChildSpec, Supervisor
from tests.ops.test_supervisor import SLEEPER, Events, alive
from tests.support import eventually as until


def abandon(supervisor: Supervisor) -> None:
    """What a SIGKILL of the monitor does to its supervisor: nothing runs any more."""
    for child in supervisor._children.values():
        if child.task is not None:
            child.task.cancel()


@pytest.fixture
async def run_dir(tmp_path):
    yield tmp_path / "run"
    for path in (tmp_path / "run").glob("*.pid"):  # whatever a failed test left running
        pid = json.loads(path.read_text())["pid"]
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


async def test_it_adopts_a_child_left_running_then_restarts_and_finally_stops_it(run_dir):
    events = Events()
    first = Supervisor([ChildSpec("a", SLEEPER)], on_event=events, pid_dir=run_dir,
                       backoff_base=0.05)
    await first.start()
    pid = first.status()["a"]["pid"]
    abandon(first)
    second = Supervisor([ChildSpec("a", SLEEPER)], on_event=events, pid_dir=run_dir,
                        backoff_base=0.05)
    await second.start()
    try:
        assert second.status()["a"]["pid"] == pid and second.status()["a"]["running"]
        os.kill(pid, signal.SIGKILL)  # the adopted child dies: restarted like any other
        await until(lambda: second.status()["a"]["pid"] not in (None, pid))
        assert events.of("a")[0][0] == "restart"
        assert "adopted" in events.of("a")[0][1]
        new_pid = second.status()["a"]["pid"]
        assert pidfiles.read(run_dir, "a").pid == new_pid
    finally:
        await second.stop()
    assert not alive(new_pid) and not alive(pid)
    assert not (run_dir / "a.pid").exists()


async def test_it_stops_an_adopted_child_on_a_clean_stop(run_dir):
    first = Supervisor([ChildSpec("a", SLEEPER)], on_event=Events(), pid_dir=run_dir)
    await first.start()
    pid = first.status()["a"]["pid"]
    abandon(first)
    second = Supervisor([ChildSpec("a", SLEEPER)], on_event=Events(), pid_dir=run_dir)
    await second.start()
    await second.stop(timeout=5)
    assert not alive(pid) and not (run_dir / "a.pid").exists()


async def test_it_replaces_a_child_started_with_other_arguments(run_dir):
    first = Supervisor([ChildSpec("a", SLEEPER)], on_event=Events(), pid_dir=run_dir)
    await first.start()
    old = first.status()["a"]["pid"]
    abandon(first)
    other = [sys.executable, "-c", "import time; time.sleep(61)"]
    second = Supervisor([ChildSpec("a", other)], on_event=Events(), pid_dir=run_dir)
    await second.start()
    try:
        await until(lambda: not alive(old))
        assert second.status()["a"]["pid"] != old
        new = psutil.Process(second.status()["a"]["pid"])
        await until(lambda: new.cmdline() != [])  # a fresh fork has no cmdline until exec
        assert new.cmdline() == other
    finally:
        await second.stop()


async def test_it_forgets_a_pid_file_whose_process_is_gone(run_dir):
    run_dir.mkdir()
    (run_dir / "a.pid").write_text(json.dumps({"pid": 2 ** 22 - 1, "started": 1.0,
                                               "argv": SLEEPER}))
    supervisor = Supervisor([ChildSpec("a", SLEEPER)], on_event=Events(), pid_dir=run_dir)
    await supervisor.start()
    try:
        pid = supervisor.status()["a"]["pid"]
        assert pid != 2 ** 22 - 1 and alive(pid)
        assert pidfiles.read(run_dir, "a").pid == pid
    finally:
        await supervisor.stop()


async def test_it_reports_which_children_hold_their_ports(run_dir):
    supervisor = Supervisor([ChildSpec("a", SLEEPER)], on_event=Events(), pid_dir=run_dir)
    await supervisor.start()
    try:
        assert pidfiles.held(run_dir, ["a", "b"]) == {"a"}
    finally:
        await supervisor.stop()
    assert pidfiles.held(run_dir, ["a", "b"]) == set()
