"""`rollout start|status|promote|pause|resume|abort` from the command line."""

from __future__ import annotations

import asyncio
import json

import pytest

from monitor.__main__ import main
from monitor.config import load_settings
from monitor.runtime import create_runtime
from monitor.storage import commands
from monitor.storage.store import Store


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("MONITOR_SERVICES", "MONITOR_DATABASE_URL", "MONITOR_SECRET_KEY", "MONITOR_SPEC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
async def monitor(data_dir):
    """A monitor on the same database, applying queued commands as the running one does."""
    runtime = create_runtime(load_settings())

    async def apply() -> None:
        while True:
            await runtime.duties.apply_commands()
            await asyncio.sleep(0.05)

    task = asyncio.create_task(apply())
    yield runtime
    task.cancel()
    await runtime.client.aclose()
    runtime.store.dispose()


def cli(*argv: str) -> int:
    return main(["rollout", *argv])


async def test_it_starts_a_rollout_through_the_running_monitor_and_shows_it(monitor, capsys):
    assert await asyncio.to_thread(cli, "start", "v2", "--strategy", "canary") == 0
    assert "canary v1 -> v2" in capsys.readouterr().out
    assert cli("status") == 0
    assert capsys.readouterr().out.strip() == \
        "books: canary v1 -> v2: progressing, step 1 of 2, weight 0%"
    assert cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["books"]["canary"] == "v2"
    assert await asyncio.to_thread(cli, "abort", "--reason", "changed my mind") == 0
    assert monitor.status()["rollout"]["state"] == "aborted"


async def test_it_prints_the_monitors_refusal_and_exits_1(monitor, capsys):
    assert await asyncio.to_thread(cli, "promote") == 1
    assert capsys.readouterr().err.strip() == "error: rollout: no rollout to act on"


def test_it_says_so_when_no_monitor_applies_the_command(data_dir, capsys):
    assert cli("pause", "--wait", "0.2") == 1
    err = capsys.readouterr().err
    assert "queued as command 1, but no monitor applied it within 0.2 s" in err


@pytest.mark.parametrize("version", ["V2", "2v", "v2;rm", "x" * 40])
def test_it_refuses_a_bad_version_name_and_queues_nothing(data_dir, capsys, version):
    assert cli("start", version) == 1
    assert capsys.readouterr().err.startswith("error: VERSION:")
    settings = load_settings()
    store = Store(settings.db_url())
    store.create_all()
    assert commands.pending(store) == []
    store.dispose()


def test_it_shows_no_rollout_before_the_first(data_dir, capsys):
    assert cli("status") == 0
    assert capsys.readouterr().out.strip() == "no rollout"
