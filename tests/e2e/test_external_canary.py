"""External mode: the monitor watches services whose catalog is not the shipped one.

The canary is pinned from the active version (`python -m monitor canary pin`), so the edited
catalog is not mistaken for corruption, and a silent corruption is still caught.
"""

import json
import sqlite3
import subprocess
import sys

import pytest

from bench.processes import (
    ROOT,
    all_versions_up,
    audit_table,
    free_ports,
    inject_fault,
    monitor_env,
    running_services,
    start_monitor,
)
from monitor.config import Settings
from tests.e2e.conftest import TOKEN


@pytest.fixture
def edited_catalog(tmp_path):
    """The shipped catalog with the default canary book changed, as a catalog update would."""
    books = json.loads((ROOT / "services" / "data" / "books.json").read_text())
    canary_id = Settings(_env_file=None).canary_book_id
    for book in books:
        if book["id"] == canary_id:
            book["description"] = "A second edition, with a new preface."
    path = tmp_path / "books.json"
    path.write_text(json.dumps(books))
    return path


@pytest.fixture
def services(edited_catalog):
    with running_services(TOKEN, catalog=edited_catalog) as urls:
        yield urls


def pin(workdir, data_dir, services) -> subprocess.CompletedProcess:
    port, gateway_port = free_ports(2)
    env = monitor_env(data_dir, port, gateway_port, PYTHONPATH=str(ROOT),
                      MONITOR_CHAOS_TOKEN=TOKEN,
                      MONITOR_SERVICES=",".join(f"{k}={v}" for k, v in services.items()))
    return subprocess.run([sys.executable, "-m", "monitor", "canary", "pin"], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_it_watches_an_edited_catalog_without_false_corrupt_and_catches_silent_corruption(
        tmp_path, services):
    workdir, data_dir = tmp_path / "work", tmp_path / "data"
    workdir.mkdir()
    pinned = pin(workdir, data_dir, services)
    assert pinned.returncode == 0, pinned.stderr
    env_file = (workdir / ".env").read_text()
    default_digest = Settings(_env_file=None).canary_digest
    assert "MONITOR_CANARY_DIGEST=" in env_file and default_digest not in env_file

    monitor = start_monitor(data_dir, services=services, cwd=workdir, MONITOR_CHAOS_TOKEN=TOKEN)
    try:
        status = monitor.wait_for(all_versions_up, timeout=20)
        assert (status["active"], status["epoch"]) == ("v1", 0)
        assert "corrupt" not in json.dumps(status["versions"])

        inject_fault(services["v1"], TOKEN, "corrupt", {"silent": True})
        status = monitor.wait_for(lambda s: s["active"] == "v2", timeout=20)
        v1 = next(v for v in status["versions"] if v["name"] == "v1")
        assert "corrupt" in json.dumps(v1)
    finally:
        stopped = monitor.stop()
    assert stopped == 0, monitor.text
    pins = audit_table(data_dir, "target, params", action="canary.pin")
    with sqlite3.connect(data_dir / "monitor.db") as db:
        corrupt = db.execute("SELECT DISTINCT version FROM probe "
                             "WHERE failure='corrupt'").fetchall()
    assert pins[0][0] == "v1" and json.loads(pins[0][1])["digest"] in env_file
    assert corrupt == [("v1",)]
