"""Long work shows progress: a bar on a terminal, plain lines (with an estimate) otherwise."""

from __future__ import annotations

import io

import pytest

from monitor.__main__ import main
from monitor.config import load_settings
from monitor.storage import audit, chain
from monitor.storage.keys import load_keys
from monitor.storage.progress import BarProgress, PlainProgress, estimate, progress_for
from monitor.storage.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("done, total, elapsed, left", [
    (0, 100, 5.0, None),      # no rate yet
    (25, 100, 5.0, 15.0),     # the rate so far, over what is left
    (100, 100, 9.0, 0.0),
])
def test_it_estimates_the_time_left_from_the_rate_so_far(done, total, elapsed, left):
    assert estimate(done, total, elapsed) == left


def test_it_prints_a_plain_line_per_tenth_with_an_estimate():
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress("verify", out, clock)
    progress.total(1000)
    for _ in range(4):
        clock.now += 1.0
        progress.advance(250)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "verify: 250/1000 (25%), 1.0 s elapsed, about 3.0 s left",
        "verify: 500/1000 (50%), 2.0 s elapsed, about 2.0 s left",
        "verify: 750/1000 (75%), 3.0 s elapsed, about 1.0 s left",
        "verify: 1000/1000 (100%), 4.0 s elapsed, about 0.0 s left",
        "verify: done, 1000 in 4.0 s",
    ]


def test_it_prints_at_most_one_line_per_tenth_of_many_small_steps():
    out = io.StringIO()
    progress = PlainProgress("archive", out, Clock())
    progress.total(10_000)
    for _ in range(1000):
        progress.advance(10)
    assert len(out.getvalue().splitlines()) == 10


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_it_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    assert isinstance(progress_for("verify", io.StringIO()), PlainProgress)
    bar = progress_for("verify", Terminal())
    assert isinstance(bar, BarProgress)
    bar.total(10)
    bar.advance(10)
    bar.finish()


@pytest.fixture
def log(tmp_path, monkeypatch):
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path))
    settings = load_settings()
    store = Store(settings.db_url())
    store.create_all()
    with store.write() as session:
        for index in range(120):
            audit.append(session, load_keys(settings).audit, now=1.75e9 + index,
                         action="test.step")
    yield tmp_path
    store.dispose()


def test_verify_full_reports_progress_in_plain_lines_on_stderr(log, capsys, monkeypatch):
    monkeypatch.setattr(chain, "PROGRESS_EVERY", 30)
    assert main(["audit", "verify", "--full"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "120/120 records valid\n"
    lines = captured.err.splitlines()
    assert [line.split(",")[0] for line in lines[:-1]] == [
        "verify: 30/120 (25%)", "verify: 60/120 (50%)", "verify: 90/120 (75%)",
        "verify: 120/120 (100%)"]
    assert lines[-1].startswith("verify: done, 120 in ")


def test_backup_reports_progress_in_plain_lines(log, capsys, monkeypatch):
    from monitor.storage import store

    monkeypatch.setattr(store, "BACKUP_PAGES", 2)
    assert main(["backup", str(log / "copy.db")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("backup: done, ") and len(err) >= 3
    pages = int(err[-1].split()[2])
    assert pages > 2 and err[-2].startswith(f"backup: {pages}/{pages} (100%)")
