"""`python -m monitor audit verify [--full]`: incremental by default, streamed, bounded memory."""

from __future__ import annotations

import sqlite3
import weakref

import pytest

from monitor.__main__ import main
from monitor.config import load_settings
from monitor.storage import audit, chain, verifier
from monitor.storage.keys import load_keys
from monitor.storage.store import Store

NOW = 1_750_000_000.0
ROWS = 40


class Log:
    """A data dir with an audit log of ROWS rows and a checkpoint after row 30."""

    def __init__(self, data_dir) -> None:
        self.settings = load_settings()
        self.key = load_keys(self.settings).audit
        self.db = data_dir / "monitor.db"
        self.checkpoints = data_dir / "audit.checkpoints"
        self.store = Store(self.settings.db_url())
        self.store.create_all()
        self.append(30)
        audit.write_checkpoint(self.store, self.key, self.checkpoints, now=NOW + 60)
        self.append(ROWS - 30)

    def append(self, count: int, start: float = NOW) -> None:
        with self.store.write() as session:
            for index in range(count):
                audit.append(session, self.key, now=start + index, action="test.step",
                             reason=f"step {index}")

    def tamper(self, sql: str, *args: object) -> None:
        conn = sqlite3.connect(self.db)
        with conn:
            conn.execute(sql, args)
        conn.close()


@pytest.fixture
def log(tmp_path, monkeypatch):
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path))
    made = Log(tmp_path)
    yield made
    made.store.dispose()


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["audit", "verify", *args])
    return code, capsys.readouterr().out


def test_it_verifies_an_intact_log_incrementally_and_in_full(log, capsys):
    assert run_cli(capsys) == (0, f"{ROWS}/{ROWS} records valid\n")
    assert run_cli(capsys, "--full") == (0, f"{ROWS}/{ROWS} records valid\n")


def test_it_starts_the_incremental_walk_at_the_newest_verified_checkpoint(log):
    running = verifier.Verifier(log.store, log.key, log.checkpoints)
    assert running.run().ok and running.rows_read == ROWS - 30


@pytest.mark.parametrize("seq", [3, 17, 29])
def test_it_finds_tampering_before_the_checkpoint_only_with_full(log, capsys, seq):
    log.tamper("UPDATE audit SET reason = 'rewritten' WHERE seq = ?", seq)
    assert run_cli(capsys)[0] == 0  # before the verified checkpoint: --full's job
    code, out = run_cli(capsys, "--full")
    assert code == 1 and f"seq {seq}: modified" in out


@pytest.mark.parametrize("sql, args, found", [
    ("UPDATE audit SET reason = 'rewritten' WHERE seq = ?", (35,), "seq 35: modified"),
    ("DELETE FROM audit WHERE seq = ?", (33,), "seq 33: deleted"),
    ("DELETE FROM audit WHERE seq > ?", (25,), "truncated"),
    ("UPDATE audit SET seq = 99 WHERE seq = ?", (ROWS,), "seq 99: modified"),
])
def test_it_finds_tampering_after_the_checkpoint_incrementally(log, capsys, sql, args, found):
    log.tamper(sql, *args)
    for mode in ((), ("--full",)):
        code, out = run_cli(capsys, *mode)
        assert code == 1 and found in out, (mode, out)


def test_it_gives_the_dashboards_result(log):
    log.tamper("UPDATE audit SET actor = 'mallory' WHERE seq = ?", 36)
    cli = audit.verify(log.store, log.key, log.checkpoints, full=False)
    dashboard = verifier.Verifier(log.store, log.key, log.checkpoints).run()
    assert cli.as_dict() == dashboard.as_dict() and not cli.ok


def test_it_prints_json_with_every_problem(log, capsys):
    log.tamper("UPDATE audit SET reason = 'x' WHERE seq = ?", 38)
    code = main(["audit", "verify", "--json"])
    out = capsys.readouterr().out
    assert code == 1 and '"kind": "modified"' in out and '"seq": 38' in out


def test_it_holds_one_batch_of_rows_at_a_time_in_a_full_walk(log, monkeypatch):
    batch = 7
    monkeypatch.setattr(chain, "BATCH", batch)
    peak = {"rows": 0, "seen": 0, "alive": 0}
    real = chain.ChainRow.__init__

    def gone() -> None:
        peak["alive"] -= 1

    def tracked(self, *args):
        real(self, *args)
        weakref.finalize(self, gone)  # runs when the row is freed
        peak["seen"] += 1
        peak["alive"] += 1
        peak["rows"] = max(peak["rows"], peak["alive"])

    monkeypatch.setattr(chain.ChainRow, "__init__", tracked)
    report = audit.verify(log.store, log.key, log.checkpoints, full=True)
    assert report.ok and peak["seen"] >= ROWS
    assert peak["rows"] <= batch + 2 < ROWS  # a batch, plus the walk's one-row look-ahead


@pytest.mark.parametrize("damage", [
    lambda lines: [],                                           # the file emptied
    lambda lines: lines[:-1],                                   # the last line cut
    lambda lines: lines[1:],                                    # an older line removed
    lambda lines: lines[:-1] + [lines[-1].replace('"seq": 41', '"seq": 42')],  # forged
])
def test_it_finds_a_damaged_checkpoint_file_incrementally(log, capsys, damage):
    log.append(1)
    audit.write_checkpoint(log.store, log.key, log.checkpoints, now=NOW + 120)  # head 41
    lines = log.checkpoints.read_text().splitlines()
    log.checkpoints.write_text("".join(line + "\n" for line in damage(lines)))
    code, out = run_cli(capsys)
    assert code == 1 and "checkpoint" in out, out


def test_it_finds_a_missing_checkpoint_file_incrementally(log, capsys):
    log.checkpoints.unlink()
    code, out = run_cli(capsys)
    assert code == 1 and "audit.checkpoints is missing" in out


def test_it_verifies_a_database_not_yet_migrated_to_the_archive_tables(log, capsys):
    log.tamper("DROP TABLE audit_segment")  # a 0004 database: the monitor not restarted yet
    assert run_cli(capsys) == (0, f"{ROWS}/{ROWS} records valid\n")


def test_it_names_the_data_dir_when_there_is_no_audit_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path))
    load_keys(load_settings())
    assert main(["audit", "verify"]) == 2
    assert "no audit log in" in capsys.readouterr().err
