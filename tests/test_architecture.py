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


MAX_LINES = 300
SIZED = sorted([*MONITOR.glob("*.py"), *(MONITOR / "failover").glob("*.py")])  # grows per package


@pytest.mark.parametrize("path", SIZED, ids=lambda p: str(p.relative_to(MONITOR)))
def test_it_keeps_each_module_to_one_concept_of_at_most_300_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
