"""`audit archive --before DATE`: a verified, signed segment file, then the delete, and the chain
goes on from a signed anchor; tampering with either is found, and a crash loses nothing."""

from __future__ import annotations

import gzip
import sqlite3

import pytest
from sqlmodel import select

from monitor.__main__ import main
from monitor.config import load_settings
from monitor.storage import archive, audit, segments
from monitor.storage.keys import load_keys
from monitor.storage.store import AuditRow, Store

DAY = 86_400.0
START = 1_750_000_000.0  # 2025-06-15
ROWS = 30  # one a day


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path))
    settings = load_settings()
    key = load_keys(settings).audit
    store = Store(settings.db_url())
    store.create_all()
    for day in range(ROWS):
        with store.write() as session:
            audit.append(session, key, now=START + day * DAY, action="test.step",
                         reason=f"day {day}")
    audit.write_checkpoint(store, key, tmp_path / "audit.checkpoints", now=START + ROWS * DAY)
    yield store, key, tmp_path
    store.dispose()


def cli(capsys, *args: str, errors: bool = False) -> tuple[int, str]:
    """Exit code and stdout (with `errors`, stderr after it: messages and progress)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + (captured.err if errors else "")


def stored_seqs(store: Store) -> list[int]:
    with store.read() as session:
        return list(session.exec(select(AuditRow.seq).order_by(AuditRow.seq)))


def test_it_archives_old_rows_and_the_chain_still_verifies(data, capsys):
    store, _, tmp_path = data
    code, out = cli(capsys, "audit", "archive", "--before", "2025-06-25")
    assert code == 0 and "archived 10 rows (seq 1-10)" in out
    assert stored_seqs(store)[:2] == [11, 12] and stored_seqs(store)[-1] == ROWS + 1
    [segment] = (tmp_path / "audit-archive").iterdir()
    assert segment.name == "audit-000000000001-000000000010.jsonl.gz"
    assert segment.stat().st_mode & 0o077 == 0  # audit rows: private, even run without umask
    assert segment.parent.stat().st_mode & 0o077 == 0
    for mode in ((), ("--full",)):
        assert cli(capsys, "audit", "verify", *mode) == (
            0, f"{ROWS + 1}/{ROWS + 1} records valid\n"), mode
    with store.read() as session:
        [row] = session.exec(select(AuditRow).where(AuditRow.action == "audit.archive"))
    assert row.target.endswith(".jsonl.gz") and '"rows": 10' in row.params


def test_it_archives_twice_and_chains_the_records(data, capsys):
    store, _, _ = data
    assert cli(capsys, "audit", "archive", "--before", "2025-06-20")[0] == 0
    assert cli(capsys, "audit", "archive", "--before", "2025-06-30")[0] == 0
    records = segments.records(store)
    assert [(r.first_seq, r.last_seq) for r in records] == [(1, 5), (6, 15)]
    assert records[1].prev == records[0].mac
    assert cli(capsys, "audit", "verify", "--full")[0] == 0


def test_it_never_archives_the_newest_row(data, capsys):
    store, _, _ = data
    assert cli(capsys, "audit", "archive", "--before", "2026-01-01")[0] == 0
    assert stored_seqs(store) == [ROWS, ROWS + 1]  # the head, and the archive's own row
    assert cli(capsys, "audit", "verify", "--full")[0] == 0


@pytest.mark.parametrize("before, message", [
    ("yesterday", "--before: expected a date like 2025-01-31"),
    ("2999-01-01", "--before: 2999-01-01 is in the future"),
])
def test_it_refuses_a_bad_date_and_changes_nothing(data, capsys, before, message):
    store, _, tmp_path = data
    code, out = cli(capsys, "audit", "archive", "--before", before, errors=True)
    assert code == 2 and message in out
    assert stored_seqs(store) == list(range(1, ROWS + 1))
    assert not (tmp_path / "audit-archive").exists()


def test_it_archives_nothing_before_the_first_row(data, capsys):
    store, _, _ = data
    assert cli(capsys, "audit", "archive", "--before", "2020-01-01") == (
        0, "nothing to archive before 2020-01-01T00:00:00.000Z\n")
    assert stored_seqs(store) == list(range(1, ROWS + 1))


def rewrite_segment(path, old: str, new: str) -> None:
    with gzip.open(path, "rt") as handle:
        text = handle.read()
    assert old in text
    with gzip.open(path, "wt") as handle:
        handle.write(text.replace(old, new, 1))


def test_it_finds_a_tampered_segment_only_with_full(data, capsys):
    _, _, tmp_path = data
    cli(capsys, "audit", "archive", "--before", "2025-06-25")
    [segment] = (tmp_path / "audit-archive").iterdir()
    rewrite_segment(segment, '"reason": "day 4"', '"reason": "day 4, nothing happened"')
    assert cli(capsys, "audit", "verify")[0] == 0
    code, out = cli(capsys, "audit", "verify", "--full")
    assert code == 1 and "seq 5: modified" in out and "archive" in out


def test_it_finds_a_deleted_segment_file(data, capsys):
    _, _, tmp_path = data
    cli(capsys, "audit", "archive", "--before", "2025-06-25")
    [segment] = (tmp_path / "audit-archive").iterdir()
    segment.unlink()
    code, out = cli(capsys, "audit", "verify", "--full")
    assert code == 1 and f"segment file {segment.name} is missing" in out


@pytest.mark.parametrize("sql", [
    "UPDATE audit_segment SET last_seq = 12",    # claims more rows were archived
    "UPDATE audit_segment SET last_mac = 'ff'",  # a forged anchor
    "DELETE FROM audit_segment",                 # the anchor removed
])
def test_it_finds_a_tampered_anchor_even_incrementally(data, capsys, sql):
    store, _, tmp_path = data
    cli(capsys, "audit", "archive", "--before", "2025-06-25")
    conn = sqlite3.connect(tmp_path / "monitor.db")
    with conn:
        conn.execute(sql)
    conn.close()
    for mode in ((), ("--full",)):
        assert cli(capsys, "audit", "verify", *mode)[0] == 1, (sql, mode)


def test_a_crash_between_writing_and_deleting_loses_nothing(data, capsys):
    store, key, tmp_path = data

    class Crash(Exception):
        pass

    def crash(path) -> None:
        assert path.exists()
        raise Crash  # the process dies after the fsynced file, before the delete

    directory = tmp_path / "audit-archive"
    before = archive.parse_before("2025-06-25", now=START + 99 * DAY)
    with pytest.raises(Crash):
        archive.archive(store, key, directory, before=before, now=START + 99 * DAY,
                        after_write=crash)
    assert stored_seqs(store) == list(range(1, ROWS + 1)) and segments.records(store) == []
    assert cli(capsys, "audit", "verify", "--full") == (0, f"{ROWS}/{ROWS} records valid\n")
    code, out = cli(capsys, "audit", "archive", "--before", "2025-06-25")
    assert code == 0 and "archived 10 rows" in out
    assert len(list(directory.iterdir())) == 1
    assert cli(capsys, "audit", "verify", "--full")[0] == 0


def test_it_refuses_to_archive_rows_that_do_not_verify(data, capsys):
    store, _, tmp_path = data
    conn = sqlite3.connect(tmp_path / "monitor.db")
    with conn:
        conn.execute("UPDATE audit SET reason = 'rewritten' WHERE seq = 3")
    conn.close()
    code, out = cli(capsys, "audit", "archive", "--before", "2025-06-25", errors=True)
    assert code == 1 and "do not verify" in out and "seq 3: modified" in out
    assert stored_seqs(store) == list(range(1, ROWS + 1))
    assert list((tmp_path / "audit-archive").iterdir()) == []


def test_it_archives_and_verifies_on_each_backend(store, tmp_path):
    key = b"k" * 32
    with store.write() as session:
        for day in range(12):
            audit.append(session, key, now=START + day * DAY, action="test.step")
    directory = tmp_path / "segments"
    before = archive.parse_before("2025-06-20", now=START + 99 * DAY)
    done = archive.archive(store, key, directory, before=before, now=START + 99 * DAY)
    assert done is not None and (done.first, done.last, done.rows) == (1, 5, 5)
    assert stored_seqs(store) == list(range(6, 14))
    for full in (False, True):
        report = audit.verify(store, key, None, full=full, archive_dir=directory)
        assert report.ok and report.summary() == "13/13 records valid", (full, report.problems)
