"""What an apply changes: a line per changed field, as the audit row and `--dry-run` show it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from monitor.desired.spec import ServiceSpec


def diff(old: Sequence[ServiceSpec], new: Sequence[ServiceSpec]) -> list[str]:
    """Lines like ``+ books``, ``- shop`` or ``~ books spec.versions[0].replicas: 1 -> 3``.

    Lists are compared by position (the version list is a priority order, so a reordering is
    a change of every moved entry). Empty when nothing changes."""
    before = {s.name: s.document() for s in old}
    after = {s.name: s.document() for s in new}
    lines = [f"- {name}" for name in before if name not in after]
    for name, document in after.items():
        if name not in before:
            lines.append(f"+ {name}")
        else:
            lines.extend(f"~ {name} {change}" for change in _changes(before[name], document, ""))
    return lines


def _changes(old: Any, new: Any, path: str) -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            yield from _changes(old.get(key), new.get(key), where)
    elif isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            yield from _changes(old[index] if index < len(old) else None,
                                new[index] if index < len(new) else None, f"{path}[{index}]")
    elif old != new:
        yield f"{path}: {_short(old)} -> {_short(new)}"


def _short(value: Any) -> str:
    text = "unset" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
