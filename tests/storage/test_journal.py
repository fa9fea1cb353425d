"""The journal of queued transactions: fsynced lines, replayed in order, emptied when done."""

from __future__ import annotations

import pytest

from monitor.storage.journal import Journal


def test_it_hands_back_what_was_not_done_in_order_after_a_restart(tmp_path):
    path = tmp_path / "decisions.journal"
    journal = Journal(path)
    first = journal.append({"n": 1})
    second = journal.append({"n": 2})
    journal.append({"n": 3})
    journal.done(second)
    again = Journal(path)  # what a restarted process reads
    assert [entry["n"] for _, entry in again.pending()] == [1, 3]
    again.done(first)
    fourth = again.append({"n": 4})
    assert fourth > 3  # ids never repeat within a file
    assert [entry["n"] for _, entry in Journal(path).pending()] == [3, 4]


def test_it_empties_the_file_when_nothing_is_pending(tmp_path):
    path = tmp_path / "decisions.journal"
    journal = Journal(path)
    ident = journal.append({"type": "decision"})
    assert path.stat().st_size > 0
    journal.done(ident)
    assert path.stat().st_size == 0 and len(journal) == 0


def test_it_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "decisions.journal"
    Journal(path).append({"n": 1})
    with open(path, "a") as handle:
        handle.write('{"add": 2, "entry": {"n"')  # a crash in the middle of a write
    assert [entry for _, entry in Journal(path).pending()] == [{"n": 1}]


def test_it_refuses_a_journal_damaged_in_the_middle(tmp_path):
    path = tmp_path / "decisions.journal"
    path.write_text('garbage\n{"add": 1, "entry": {}}\n')
    with pytest.raises(ValueError, match="line 1 is damaged"):
        Journal(path)
