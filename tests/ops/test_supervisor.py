"""Supervisor: pure restart decisions as a table, then real tiny child processes."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from monitor.ops.supervisor import (
    ChildSpec,
    RestartDecision,
    RestartPolicy,
    Supervisor,
    death_signal_hook,
    describe_exit,
    next_restart,
)
from tests.support import eventually

POLICY = RestartPolicy(backoff_base=0.5, backoff_max=30.0, give_up_after=5, window=60.0)


@pytest.mark.parametrize(
    ("restarts", "now", "expected"),
    [
        ([], 100.0, RestartDecision(give_up=False, delay=0.5, attempt=1)),
        ([99.0], 100.0, RestartDecision(give_up=False, delay=1.0, attempt=2)),
        ([97.0, 98.0, 99.0], 100.0, RestartDecision(give_up=False, delay=4.0, attempt=4)),
        ([96.0, 97.0, 98.0, 99.0], 100.0, RestartDecision(give_up=False, delay=8.0, attempt=5)),
        ([95.0, 96.0, 97.0, 98.0, 99.0], 100.0, RestartDecision(give_up=True, attempt=5)),
        # restarts older than the window are forgotten: back to the base delay
        ([10.0, 20.0, 30.0, 39.0], 100.0, RestartDecision(give_up=False, delay=0.5, attempt=1)),
        ([10.0, 20.0, 30.0, 39.0, 41.0], 100.0,
         RestartDecision(give_up=False, delay=1.0, attempt=2)),
        # exactly `window` old counts as forgotten
        ([40.0], 100.0, RestartDecision(give_up=False, delay=0.5, attempt=1)),
    ],
)
def test_it_backs_off_exponentially_and_gives_up_after_a_burst(restarts, now, expected):
    assert next_restart(restarts, now, POLICY) == expected


@pytest.mark.parametrize(("recent", "delay"), [(5, 16.0), (6, 30.0), (9, 30.0)])
def test_it_caps_the_back_off(recent, delay):
    policy = RestartPolicy(backoff_base=0.5, backoff_max=30.0, give_up_after=100, window=60.0)
    assert next_restart([50.0] * recent, 60.0, policy).delay == delay


@pytest.mark.parametrize(
    ("returncode", "text"),
    [(1, "exited with code 1"), (0, "exited with code 0"), (-9, "killed by signal SIGKILL"),
     (-15, "killed by signal SIGTERM"), (None, "exited")],
)
def test_it_describes_how_a_child_exited(returncode, text):
    assert describe_exit(returncode) == text


# Real processes -----------------------------------------------------------------------------

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def crasher(after: float, code: int = 1) -> list[str]:
    return [sys.executable, "-c", f"import sys, time; time.sleep({after}); sys.exit({code})"]


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, name: str, kind: str, reason: str) -> None:
        self.items.append((name, kind, reason))

    def of(self, name: str) -> list[tuple[str, str]]:
        return [(kind, reason) for n, kind, reason in self.items if n == name]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
async def supervise():
    created: list[Supervisor] = []

    def make(specs, **kwargs) -> Supervisor:
        sup = Supervisor(specs, **kwargs)
        created.append(sup)
        return sup

    yield make
    for sup in created:
        await sup.stop(timeout=2.0)


async def test_it_restarts_a_crashing_child_with_back_off_and_reports_each_restart(supervise):
    events = Events()
    sup = supervise([ChildSpec("v1", crasher(0.2)), ChildSpec("v2", SLEEPER)],
                    on_event=events, backoff_base=0.1)
    await sup.start()
    first_pid = sup.status()["v1"]["pid"]
    assert isinstance(first_pid, int)

    await eventually(lambda: sup.status()["v1"]["restarts"] >= 2)
    await eventually(lambda: sup.status()["v1"]["pid"] not in (None, first_pid))

    assert events.of("v1")[:2] == [
        ("restart", "exited with code 1; restart 1 in 0.1s"),
        ("restart", "exited with code 1; restart 2 in 0.2s"),
    ]
    assert events.of("v2") == []
    status = sup.status()
    assert status["v1"]["last_exit"] == "exited with code 1"
    assert status["v1"]["given_up"] is False
    assert status["v2"] == {"pid": status["v2"]["pid"], "running": True, "restarts": 0,
                            "given_up": False, "last_exit": None}


async def test_it_restarts_a_child_killed_by_a_signal(supervise):
    events = Events()
    sup = supervise([ChildSpec("v1", SLEEPER)], on_event=events, backoff_base=0.01)
    await sup.start()
    pid = sup.status()["v1"]["pid"]

    psutil.Process(pid).kill()
    await eventually(lambda: sup.status()["v1"]["running"] and sup.status()["v1"]["pid"] != pid)

    assert events.of("v1") == [("restart", "killed by signal SIGKILL; restart 1 in 0.0s")]
    assert not alive(pid)


async def test_it_leaves_a_child_that_keeps_dying_down(supervise):
    events = Events()
    sup = supervise([ChildSpec("v3", crasher(0, code=3))], on_event=events,
                    backoff_base=0.01, give_up_after=2, give_up_window=60.0)
    await sup.start()

    await eventually(lambda: sup.status()["v3"]["given_up"])

    kinds = [kind for kind, _ in events.of("v3")]
    assert kinds == ["restart", "restart", "gave_up"]
    assert events.of("v3")[-1][1] == "exited with code 3; 2 restarts within 60s, leaving it down"
    status = sup.status()["v3"]
    assert (status["running"], status["pid"], status["restarts"]) == (False, None, 2)


async def test_it_reports_a_child_that_cannot_start_and_gives_up(supervise, tmp_path):
    events = Events()
    missing = str(tmp_path / "no-such-program")
    sup = supervise([ChildSpec("v2", [missing])], on_event=events,
                    backoff_base=0.01, give_up_after=1)
    await sup.start()

    await eventually(lambda: sup.status()["v2"]["given_up"])

    assert [kind for kind, _ in events.of("v2")] == ["restart", "gave_up"]
    assert all(reason.startswith("failed to start:") for _, reason in events.of("v2"))


async def test_it_keeps_supervising_when_the_event_listener_fails(supervise):
    calls = []

    def broken(name, kind, reason):
        calls.append(kind)
        raise RuntimeError("listener bug")

    sup = supervise([ChildSpec("v1", crasher(0))], on_event=broken, backoff_base=0.01)
    await sup.start()

    await eventually(lambda: sup.status()["v1"]["restarts"] >= 2)
    assert calls[:2] == ["restart", "restart"]


async def test_it_stops_every_process_group_and_never_restarts_on_stop(supervise):
    events = Events()
    spawner = [sys.executable, "-c",
               "import subprocess, sys, time;"
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
               "time.sleep(60)"]
    sup = supervise([ChildSpec("v1", SLEEPER), ChildSpec("v2", spawner)], on_event=events)
    await sup.start()
    pids = {name: s["pid"] for name, s in sup.status().items()}
    await eventually(lambda: len(psutil.Process(pids["v2"]).children()) == 1)
    grandchild = psutil.Process(pids["v2"]).children()[0].pid

    await sup.stop(timeout=5.0)

    assert [pid for pid in (*pids.values(), grandchild) if alive(pid)] == []
    assert events.items == []
    assert {name: s["running"] for name, s in sup.status().items()} == {"v1": False, "v2": False}
    assert sup.status()["v1"]["last_exit"] == "killed by signal SIGTERM"


async def test_it_kills_a_child_that_ignores_sigterm_and_logs_its_output(supervise, tmp_path):
    stubborn = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                "print('ready', flush=True); time.sleep(60)"]
    sup = supervise([ChildSpec("v1", stubborn, env={"EXTRA": "1"})], on_event=Events(),
                    log_dir=tmp_path / "logs")
    await sup.start()
    pid = sup.status()["v1"]["pid"]
    log_file = Path(tmp_path / "logs" / "v1.log")
    await eventually(lambda: log_file.exists() and "ready" in log_file.read_text())

    await sup.stop(timeout=0.3)

    assert not alive(pid)
    assert sup.status()["v1"]["last_exit"] == "killed by signal SIGKILL"


async def test_it_passes_extra_environment_to_the_child(supervise, tmp_path):
    printer = [sys.executable, "-c",
               "import os, time; print('token=' + os.environ['SERVICE_CHAOS_TOKEN'], flush=True);"
               "time.sleep(60)"]
    sup = supervise([ChildSpec("v1", printer, env={"SERVICE_CHAOS_TOKEN": "abc123"})],
                    on_event=Events(), log_dir=tmp_path)
    await sup.start()

    await eventually(lambda: "token=abc123" in (tmp_path / "v1.log").read_text())
    assert sup.status()["v1"]["running"] is True


PR_GET_PDEATHSIG = 2
READ_DEATH_SIGNAL = ("import ctypes; libc = ctypes.CDLL(None); sig = ctypes.c_int(); "
                     f"libc.prctl({PR_GET_PDEATHSIG}, ctypes.byref(sig)); print(sig.value)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_it_resolves_prctl_in_the_parent_and_sets_the_death_signal_in_the_child(monkeypatch):
    import ctypes
    import signal
    import subprocess

    hook = death_signal_hook()
    assert hook is not None

    def no_dlopen_in_the_child(*args, **kwargs):
        raise AssertionError("the child must not load libraries")

    monkeypatch.setattr(ctypes, "CDLL", no_dlopen_in_the_child)
    done = subprocess.run([sys.executable, "-c", READ_DEATH_SIGNAL], preexec_fn=hook,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == signal.SIGTERM
