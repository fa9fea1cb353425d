"""The data dir: one monitor at a time, private files, a key nobody else can read, and a
writer whose commits survive a power cut."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.config import ConfigError, Settings
from monitor.storage.datadir import DataDirBusy, DataDirLock, private_files
from monitor.storage.keys import load_keys
from monitor.storage.store import Store


def test_it_lets_only_one_holder_lock_a_data_dir_and_names_its_pid(tmp_path):
    with DataDirLock(tmp_path):
        with pytest.raises(DataDirBusy, match=f"PID {os.getpid()}") as caught:
            DataDirLock(tmp_path).acquire()
        assert str(tmp_path.resolve()) in str(caught.value)
        assert len(str(caught.value).splitlines()) == 1
    again = DataDirLock(tmp_path).acquire()  # released: the next monitor may start
    again.release()


def test_it_creates_files_private_to_their_owner(tmp_path):
    old = private_files()
    try:
        (tmp_path / "monitor.db").write_text("x")
        (tmp_path / "sub").mkdir()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "monitor.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_it_refuses_a_key_other_users_can_read(tmp_path, mode):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    load_keys(settings)
    key = tmp_path / "secret.key"
    key.chmod(mode)
    with pytest.raises(ConfigError, match="readable by other users"):
        load_keys(settings)
    key.chmod(0o600)
    assert load_keys(settings).secret


def test_it_commits_writes_with_synchronous_full(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with store.write() as session:
            writer = session.exec(text("PRAGMA synchronous")).one()[0]
        with store.read() as session:
            reader = session.exec(text("PRAGMA synchronous")).one()[0]
    finally:
        store.dispose()
    assert (writer, reader) == (2, 1)  # FULL, NORMAL


def test_it_copies_the_checkpoints_before_the_database(tmp_path, monkeypatch):
    """Copied after the database, the checkpoints could name rows the copy lacks."""
    from monitor.__main__ import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "audit.checkpoints").write_text('{"seq": 1}\n')
    target = tmp_path / "backup.db"
    seen: list[bool] = []

    real = Store.backup

    def backup(self: Store, path: Path, progress: object = None) -> None:
        seen.append((tmp_path / "backup.db.checkpoints").exists())
        real(self, path, progress)

    monkeypatch.setattr(Store, "backup", backup)
    monkeypatch.setenv("MONITOR_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    assert main(["backup", str(target)]) == 0
    assert seen == [True]


def test_it_keeps_exactly_the_checkpoint_lines_the_backup_database_counts(tmp_path):
    """A checkpoint written between copying the file and copying the database must not make
    the restored log look shortened (or name rows it lacks)."""
    from monitor.storage import audit, checkpoints
    from monitor.storage.verifier import verify

    key = b"k" * 32
    store = Store(f"sqlite:///{tmp_path / 'live.db'}")
    store.create_all()
    live = tmp_path / "audit.checkpoints"
    for n in range(2):
        with store.write() as session:
            audit.append(session, key, now=1000.0 + n, action="test.step")
        audit.write_checkpoint(store, key, live, now=1000.0 + n)
    copy = tmp_path / "backup.db.checkpoints"
    copy.write_text(live.read_text())  # copied first ...
    with store.write() as session:
        audit.append(session, key, now=1003.0, action="test.step")
    audit.write_checkpoint(store, key, live, now=1003.0)  # ... a checkpoint in between ...
    store.backup(tmp_path / "backup.db")  # ... then the database
    assert checkpoints.match_backup(live, copy, tmp_path / "backup.db") == 3
    restored = Store(f"sqlite:///{tmp_path / 'backup.db'}")
    try:
        assert verify(restored, key, copy).ok
    finally:
        restored.dispose()
        store.dispose()
