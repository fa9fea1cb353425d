"""`apply -f SPEC [--dry-run]` and `get` from the command line."""

from pathlib import Path

import pytest

from monitor.__main__ import main
from monitor.config import load_settings
from monitor.storage.store import AuditRow, Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("MONITOR_SERVICES", "MONITOR_DATABASE_URL", "MONITOR_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def audit_actions(data_dir):
    store = Store(load_settings().db_url())
    with store.read() as session:
        rows = [(r.action, r.outcome) for r in session.query(AuditRow).order_by(AuditRow.seq)]
    store.dispose()
    return rows


def test_it_applies_the_examples_and_reads_them_back(data_dir, capsys):
    assert main(["apply", "-f", str(EXAMPLES / "book-v1.yaml")]) == 0
    assert "applied revision 1: books" in capsys.readouterr().out
    assert main(["apply", "-f", str(EXAMPLES / "books-autoscale.yaml")]) == 0
    out = capsys.readouterr().out
    assert "~ books spec.versions[0].replicas: unset -> 3" in out
    assert "applied revision 2" in out
    assert main(["get"]) == 0
    assert "targetCPU: 70" in capsys.readouterr().out
    assert audit_actions(data_dir) == [("spec.apply", "ok"), ("spec.apply", "ok")]


def test_it_prints_the_diff_of_a_dry_run_and_applies_nothing(data_dir, capsys):
    assert main(["apply", "--dry-run", "-f", str(EXAMPLES / "books-autoscale.yaml")]) == 0
    out = capsys.readouterr().out
    assert "+ books" in out and "nothing applied" in out
    assert main(["get"]) == 0
    assert "no spec applied" in capsys.readouterr().err
    assert audit_actions(data_dir) == []


def test_it_names_the_field_of_a_bad_spec_and_changes_nothing(data_dir, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "books-autoscale.yaml").read_text().replace("min: 1", "min: 9"))
    assert main(["apply", "-f", str(bad)]) == 1
    assert "books: spec.autoscale: min must not be above max" in capsys.readouterr().err
    assert main(["apply", "-f", str(tmp_path / "missing.yaml")]) == 1
    assert "No such file" in capsys.readouterr().err
    assert audit_actions(data_dir) == [("spec.apply", "invalid"), ("spec.apply", "invalid")]
    assert main(["get"]) == 0
    assert "no spec applied" in capsys.readouterr().err


def test_it_audits_a_repeated_apply_as_unchanged(data_dir, capsys):
    spec = str(EXAMPLES / "book-v1.yaml")
    assert main(["apply", "-f", spec]) == 0
    assert main(["apply", "-f", spec]) == 0
    assert "unchanged: books" in capsys.readouterr().out
    assert audit_actions(data_dir) == [("spec.apply", "ok"), ("spec.apply", "unchanged")]


def test_it_refuses_to_start_on_a_bad_monitor_spec_naming_the_setting(data_dir, tmp_path,
                                                                     capsys):
    from monitor.config import ConfigError
    from monitor.runtime import create_runtime

    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "books-autoscale.yaml").read_text().replace("min: 1", "min: 9"))
    settings = load_settings().model_copy(update={"spec": bad})
    with pytest.raises(ConfigError, match="MONITOR_SPEC: books: spec.autoscale: min"):
        create_runtime(settings)
    missing = load_settings().model_copy(update={"spec": tmp_path / "missing.yaml"})
    with pytest.raises(ConfigError, match="MONITOR_SPEC: cannot read"):
        create_runtime(missing)
    assert main(["get"]) == 0
    assert "no spec applied" in capsys.readouterr().err
