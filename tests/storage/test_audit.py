"""The audit chain: verification names every kind of tampering; concurrent appends never fork."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlmodel import select

from monitor.storage import audit, chain, verification, verifier
from monitor.storage.store import AuditRow, Store

KEY = b"k" * 32
NOW = 1_750_000_000.0
ROWS = 10


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "monitor.db"
    store = Store(f"sqlite:///{path}")
    store.create_all()
    for index in range(ROWS):
        with store.write() as session:
            audit.append(session, KEY, now=NOW + index, action="test.step", actor="ann",
                         reason=f"row {index + 1}", params={"n": index + 1})
    yield store, path, tmp_path / "audit.checkpoints"
    store.dispose()


def raw(path, *statements: tuple[str, tuple]) -> None:
    """Tamper with the database file directly, as an attacker with file access would."""
    conn = sqlite3.connect(path)
    with conn:
        for sql, args in statements:
            conn.execute(sql, args)
    conn.close()


def kinds(report: verification.Report) -> set[str]:
    return {p.kind for p in report.problems}


def test_it_finds_an_intact_chain_valid(db):
    store, _, checkpoints = db
    audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 60)
    report = audit.verify(store, KEY, checkpoints)
    assert report.ok and report.summary() == f"{ROWS}/{ROWS} records valid"


def test_it_detects_an_edited_row(db):
    store, path, _ = db
    raw(path, ("UPDATE audit SET reason = 'nothing happened' WHERE seq = 4", ()))
    report = audit.verify(store, KEY)
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "modified")]
    assert report.summary() == f"{ROWS - 1}/{ROWS} records valid"


def test_it_detects_a_deleted_row(db):
    store, path, _ = db
    raw(path, ("DELETE FROM audit WHERE seq = 6", ()))
    report = audit.verify(store, KEY)
    assert kinds(report) == {"deleted"}
    assert report.problems[0].seq == 6


def test_it_detects_an_inserted_row(db):
    store, path, _ = db
    shifts = [("UPDATE audit SET seq = seq + 1 WHERE seq = ?", (seq,))
              for seq in range(ROWS, 4, -1)]
    forged = ("INSERT INTO audit (seq, ts, actor, role, source_ip, user_agent, action, target, "
              "params, outcome, reason, request_id, evidence, prev_mac, mac) SELECT 5, ts, "
              "'mallory', 'admin', '', '', 'failover.manual', 'v3', '{}', 'ok', 'approved', '', "
              "'[]', mac, ? FROM audit WHERE seq = 4", ("f" * 64,))
    raw(path, *shifts, forged)
    report = audit.verify(store, KEY)
    assert kinds(report) == {"inserted", "modified"}
    renumbered = [p.seq for p in report.problems if "renumbered" in p.detail]
    assert renumbered == list(range(6, ROWS + 2))  # every shifted row is named
    assert report.valid == 4


def test_it_detects_reordered_rows(db):
    store, path, _ = db
    raw(path, ("UPDATE audit SET seq = -1 WHERE seq = 3", ()),
        ("UPDATE audit SET seq = 3 WHERE seq = 7", ()),
        ("UPDATE audit SET seq = 7 WHERE seq = -1", ()))
    report = audit.verify(store, KEY)
    assert kinds(report) == {"reordered"}
    assert {p.seq for p in report.problems} >= {3, 7}


def test_it_detects_a_cut_tail_through_the_checkpoint(db):
    store, path, checkpoints = db
    audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 60)
    raw(path, ("DELETE FROM audit WHERE seq > 7", ()))
    assert audit.verify(store, KEY).ok  # without the checkpoint the shorter chain looks fine
    report = audit.verify(store, KEY, checkpoints)
    assert kinds(report) == {"truncated"}
    assert report.summary() == f"7/{ROWS} records valid"


def test_it_detects_a_forged_checkpoint_line(db):
    store, _, checkpoints = db
    audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 60)
    checkpoints.write_text(checkpoints.read_text().replace('"seq": 10', '"seq": 99'))
    assert kinds(audit.verify(store, KEY, checkpoints)) == {"checkpoint"}


def test_it_detects_rows_written_with_another_key(db):
    store, _, _ = db
    with store.write() as session:
        audit.append(session, b"x" * 32, now=NOW + 99, action="test.forged")
    assert not audit.verify(store, KEY).ok


def test_it_encodes_control_characters_in_stored_fields(db):
    store, _, _ = db
    with store.write() as session:
        row = audit.append(session, KEY, now=NOW, action="test.step",
                           reason="ok\r\nFAKE: admin logged in\x1b[31m")
    assert row.reason == "ok\\x0d\\x0aFAKE: admin logged in\\x1b[31m"
    assert audit.verify(store, KEY).ok


def test_it_keeps_one_unbroken_chain_under_50_concurrent_appends(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'monitor.db'}")
    store.create_all()
    workers = 50
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def append(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            with store.write() as session:
                audit.append(session, KEY, now=NOW + index, action="test.concurrent",
                             actor=f"worker{index}")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and not any(t.is_alive() for t in threads)
    with store.read() as session:
        rows = list(session.exec(select(AuditRow).order_by(AuditRow.seq)))
    assert [r.seq for r in rows] == list(range(1, workers + 1))
    assert all(rows[i + 1].prev_mac == rows[i].mac for i in range(len(rows) - 1))
    assert {r.actor for r in rows} == {f"worker{i}" for i in range(workers)}
    report = audit.verify(store, KEY)
    assert report.ok and report.summary() == f"{workers}/{workers} records valid"
    store.dispose()


def test_it_detects_a_deleted_row_even_when_later_rows_were_renumbered(db):
    store, path, _ = db
    shifts = [("UPDATE audit SET seq = seq - 1 WHERE seq = ?", (seq,)) for seq in range(7, 11)]
    raw(path, ("DELETE FROM audit WHERE seq = 6", ()), *shifts)
    report = audit.verify(store, KEY)
    assert [(p.seq, p.kind) for p in report.problems] == [(6, "deleted")] + [
        (seq, "modified") for seq in range(6, 10)]
    assert all("renumbered" in p.detail for p in report.problems[1:])
    assert report.summary() == f"5/{ROWS} records valid"


def test_it_spends_a_bounded_number_of_macs_per_row_on_a_fully_tampered_log(tmp_path,
                                                                             monkeypatch):
    store = Store(f"sqlite:///{tmp_path}/big.db")
    store.create_all()
    rows = 400
    with store.write() as session:
        for index in range(rows):
            audit.append(session, KEY, now=NOW + index, action="test.step", reason=str(index))
    raw(tmp_path / "big.db", ("UPDATE audit SET reason = 'rewritten'", ()))
    calls = []
    real = audit.compute_mac
    monkeypatch.setattr(verification, "compute_mac", lambda key, fields: calls.append(1) or real(
        key, fields))
    report = audit.verify(store, KEY)
    store.dispose()
    assert report.valid == 0 and len(report.problems) == rows
    per_row = 2 + verification.WINDOW + 2 * verification.WINDOW + 1
    assert len(calls) <= rows * per_row < rows * rows


# Checkpoints: chained lines, an anchor in the database, a second sink ----------------------
def checkpoint_lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_it_detects_a_cut_tail_together_with_the_last_checkpoint_line(db):
    store, path, checkpoints = db
    audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 60)   # head 10
    with store.write() as session:
        audit.append(session, KEY, now=NOW + 61, action="test.step")
    audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 120)  # head 11
    raw(path, ("DELETE FROM audit WHERE seq > 10", ()))
    checkpoints.write_text(checkpoint_lines(checkpoints)[0] + "\n")
    report = audit.verify(store, KEY, checkpoints)
    assert kinds(report) == {"checkpoint"}
    assert "2 checkpoint(s) were written" in report.problems[0].detail


@pytest.mark.parametrize("damage", ["delete the file", "empty the file"])
def test_it_treats_a_missing_or_emptied_checkpoint_file_as_tampering(db, damage):
    store, _, checkpoints = db
    audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 60)
    if damage == "delete the file":
        checkpoints.unlink()
    else:
        checkpoints.write_text("")
    report = audit.verify(store, KEY, checkpoints)
    assert not report.ok and kinds(report) == {"checkpoint"}


def test_it_detects_a_checkpoint_line_removed_from_the_middle(db):
    store, _, checkpoints = db
    for minute in range(3):
        with store.write() as session:
            audit.append(session, KEY, now=NOW + 60 * minute, action="test.step")
        audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 60 * minute)
    first, _, third = checkpoint_lines(checkpoints)
    checkpoints.write_text(f"{first}\n{third}\n")
    report = audit.verify(store, KEY, checkpoints)
    assert any("does not follow line 1" in p.detail for p in report.problems)


def test_it_judges_truncation_by_verified_rows_only(db):
    store, path, checkpoints = db
    audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 60)
    raw(path, ("DELETE FROM audit WHERE seq > 5", ()),
        ("INSERT INTO audit (seq, ts, actor, role, source_ip, user_agent, action, target, "
         "params, outcome, reason, request_id, evidence, prev_mac, mac) SELECT 99, ts, actor, "
         "role, '', '', action, '', '{}', 'ok', '', '', '[]', mac, ? FROM audit WHERE seq = 5",
         ("e" * 64,)))
    report = audit.verify(store, KEY, checkpoints)
    assert "truncated" in kinds(report)
    [cut] = [p for p in report.problems if p.kind == "truncated"]
    assert cut.seq == 6 and "verified log ends at 5" in cut.detail


def test_it_checkpoints_after_every_security_relevant_commit(db):
    store, path, checkpoints = db
    written: list[dict] = []
    store.after_security_commit = lambda: written.append(
        audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 100))
    with store.write() as session:
        audit.append(session, KEY, now=NOW + 99, action="probe.note")  # not security relevant
    assert written == []
    with store.write() as session:
        audit.append(session, KEY, now=NOW + 100, action="login.failed", outcome="denied")
    assert [entry["seq"] for entry in written] == [ROWS + 2]
    raw(path, ("DELETE FROM audit WHERE seq = ?", (ROWS + 2,)))
    assert "truncated" in kinds(audit.verify(store, KEY, checkpoints))


def test_it_sends_each_checkpoint_line_to_the_second_sink_and_keeps_what_failed(db):
    import httpx

    from monitor.storage.checkpoints import HttpSink

    store, _, checkpoints = db
    received: list[dict] = []
    up = {"ok": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if not up["ok"]:
            return httpx.Response(503)
        received.append(__import__("json").loads(request.content))
        return httpx.Response(204)

    sink = HttpSink("https://logs.example/checkpoints", transport=httpx.MockTransport(handler))
    first = audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 60, sink=sink)
    assert received == [] and len(sink.unsent) == 1
    up["ok"] = True
    with store.write() as session:
        audit.append(session, KEY, now=NOW + 61, action="test.step")
    second = audit.write_checkpoint(store, KEY, checkpoints, now=NOW + 120, sink=sink)
    assert received == [first, second] and not sink.unsent
    assert [line["n"] for line in received] == [1, 2]
    assert received[1]["prev"] == first["sig"]


def test_it_verifies_incrementally_from_where_the_last_run_ended(db):
    store, path, checkpoints = db
    running = verifier.Verifier(store, KEY, checkpoints)
    assert running.run().ok and running.rows_read == ROWS
    with store.write() as session:
        audit.append(session, KEY, now=NOW + 99, action="test.step")
    report = running.run()
    assert report.ok and report.summary() == f"{ROWS + 1}/{ROWS + 1} records valid"
    assert running.rows_read == 1
    assert running.run(full=True).ok and running.rows_read == ROWS + 1


def test_it_walks_everything_again_when_the_row_it_ended_on_changed(db):
    store, path, checkpoints = db
    running = verifier.Verifier(store, KEY, checkpoints)
    running.run()
    raw(path, ("UPDATE audit SET reason = 'rewritten' WHERE seq = ?", (ROWS,)))
    report = running.run()
    assert running.rows_read == ROWS and [(p.seq, p.kind) for p in report.problems] == [
        (ROWS, "modified")]


def test_it_streams_rows_instead_of_loading_them_all(db, monkeypatch):
    store, _, _ = db
    monkeypatch.setattr(chain, "BATCH", 3)
    seen: list[int] = []
    real = verification.Walk._one

    def spy(self, row, following, stored):
        seen.append(row.seq)
        return real(self, row, following, stored)

    monkeypatch.setattr(verification.Walk, "_one", spy)
    assert verifier.verify(store, KEY).ok and seen == list(range(1, ROWS + 1))
