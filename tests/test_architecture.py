"""Rules of the layout that the code must keep (DESIGN §3)."""

import ast
from pathlib import Path

import pytest

MONITOR = Path(__file__).resolve().parents[1] / "monitor"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(MONITOR.rglob("*.py")), ids=lambda p: str(p.name))
def test_it_imports_nothing_from_the_watched_services(path):
    assert not {n for n in _imports(path) if n == "services" or n.startswith("services.")}
