"""`pip install .` gives a working `monitor` command with its templates and static files."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "data", "build", "__pycache__", "*.egg-info",
                              ".pytest_cache", ".ruff_cache", ".mypy_cache", "node_modules")
CHECK_FILES = """
import monitor
from monitor.notices.render import environment
from monitor.paths import STATIC_DIR
from monitor.web.deps import make_templates
print(monitor.__file__)
make_templates().get_template("overview.html")
environment().get_template("notice.txt")
assert (STATIC_DIR / "app.css").is_file() and (STATIC_DIR / "app.js").is_file()
"""


@pytest.mark.e2e
def test_it_installs_a_monitor_command_with_its_templates_and_static_files(tmp_path):
    source, site, workdir = tmp_path / "src", tmp_path / "site", tmp_path / "run"
    shutil.copytree(ROOT, source, symlinks=True, ignore=SKIP)
    workdir.mkdir()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(PYTHONPATH=str(site), MONITOR_DATA_DIR=str(tmp_path / "data"))

    files = subprocess.run([sys.executable, "-c", CHECK_FILES], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=60)
    assert files.returncode == 0, files.stderr
    assert files.stdout.startswith(str(site))

    checked = subprocess.run([str(site / "bin" / "monitor"), "check-config"], cwd=workdir,
                             env=env, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "configuration OK" in checked.stdout
