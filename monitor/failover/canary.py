"""The canary: a query whose first result must be a known book with a known content digest.

It catches a service whose `/health` says OK while it serves wrong data. The monitor does not
know the watched service's code or data: query, book id and digest are settings
(`MONITOR_CANARY_QUERY`, `_BOOK_ID`, `_DIGEST`), whose defaults match the shipped catalog.
`python -m monitor canary pin` reads them once from the active version (see `pin`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Canary:
    query: str
    book_id: str
    digest: str


def book_digest(book: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of one book (sorted keys, no whitespace, UTF-8)."""
    canonical = json.dumps(book, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class PinError(Exception):
    """The active version did not give a usable canary; the message says why."""


def read_canary(client: httpx.Client, base_url: str, query: str) -> Canary:
    """Ask `base_url` for `query` once and take its first book as the canary."""
    try:
        response = client.get(f"{base_url}/books", params={"q": query, "limit": 1})
    except httpx.HTTPError as exc:
        raise PinError(f"{base_url} did not answer: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise PinError(f"{base_url}/books answered {response.status_code}")
    try:
        items = response.json().get("items")
    except (ValueError, AttributeError):
        raise PinError(f"{base_url}/books answered without a JSON object") from None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict) \
            or not isinstance(items[0].get("id"), str):
        raise PinError(f"query {query!r} found no book on {base_url}; choose another "
                       "MONITOR_CANARY_QUERY")
    return Canary(query=query, book_id=items[0]["id"], digest=book_digest(items[0]))


def env_lines(canary: Canary) -> dict[str, str]:
    """The `.env` assignments that pin `canary`."""
    return {"MONITOR_CANARY_QUERY": json.dumps(canary.query),
            "MONITOR_CANARY_BOOK_ID": json.dumps(canary.book_id),
            "MONITOR_CANARY_DIGEST": canary.digest}


def write_env(path: Path, values: Mapping[str, str]) -> None:
    """Set `values` in the dotenv file at `path`: replace their lines, append the missing ones,
    keep every other line as it was. The file is created with mode 0600 when absent."""
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(values)
    out: list[str] = []
    for line in lines:
        name = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if "=" in line and not line.lstrip().startswith("#") and name in pending:
            out.append(f"{name}={pending.pop(name)}")
        else:
            out.append(line)
    out.extend(f"{name}={value}" for name, value in pending.items())
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
