"""Turn one batch of outbox notices into an email subject, a text body and an HTML body.

Templates live in `templates/email/` (`notice.txt`, `notice.html`); HTML is autoescaped. The
payload keys a notice may carry (all optional, unknown keys are listed as details):

- `service`: the service the notice is about (several services in one monitor); the
  watchdog's subjects start with it (`films: Failover a -> b: ...`);
- `from`, `to` (or the watchdog's `source`, `target`): versions of a failover or failback;
- `active`: the version serving traffic after the event;
- `reason`: why it happened, in one line;
- `evidence`: the last probes, a list of dicts with `version`, `ok`, `failure`, `detail`,
  `latency_ms`, `at` (epoch seconds).

A notice's subject becomes the email's Subject with line breaks and other control characters
folded into spaces, so no subject can add a header; `mailer.compose` still refuses CR/LF as the
last line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from monitor.paths import templates_dir

SUBJECT_PREFIX = "[Failover Monitor]"
HEADLINES = {
    "failover": "Failover",
    "suppressed": "Failover suppressed",
    "all_down": "All versions down",
    "recovery": "Recovered",
    "failover_impossible": "Failover impossible",
    "lockout": "Security lockout",
    "reminder": "Incident still open",
    "test": "Test notice",
    "dataplane": "Data plane unreachable",
    "rollout": "Rollout",
}
SHOWN = {"service", "from", "to", "source", "target", "active", "reason", "evidence"}
HIDDEN = {"at"}  # the notice's own time is shown instead
MAX_SUBJECT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Item:
    """What the templates need from one notice (decoupled from the table row)."""

    kind: str
    subject: str
    payload: dict[str, Any]
    created_at: float
    message_id: str = ""
    incident_id: int | None = None


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=4)
def environment(directory: Path | None = None) -> Environment:
    env = Environment(
        loader=FileSystemLoader(directory or templates_dir() / "email"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["utc"] = utc_text
    return env


def utc_text(at: object) -> str:
    """Epoch seconds as `2025-03-01 12:00:05 UTC`; anything else is shown as it is."""
    if isinstance(at, bool) or not isinstance(at, int | float):
        return "" if at is None else str(at)
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def one_line(text: str, limit: int = MAX_SUBJECT) -> str:
    """Control characters (CR, LF, tab...) folded into single spaces; long text shortened."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def subject_for(items: Sequence[Item]) -> str:
    """The first notice's subject; a batch says how many more it carries."""
    first = one_line(items[0].subject)
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    return f"{SUBJECT_PREFIX} {first}{more}"


def view(item: Item) -> dict[str, Any]:
    payload = item.payload if isinstance(item.payload, dict) else {}
    evidence = payload.get("evidence")
    if not isinstance(evidence, list):
        evidence = []
    rows = [_probe(p) for p in evidence if isinstance(p, dict)]
    headline = HEADLINES.get(item.kind, item.kind.replace("_", " ").capitalize())
    subject = one_line(item.subject, limit=1000)
    service = payload.get("service") if isinstance(payload.get("service"), str) else None
    bare = subject.removeprefix(f"{service}: ") if service else subject
    redundant = bare.lower().startswith(headline.lower())
    return {
        "kind": item.kind,
        "service": service,
        "title": subject if redundant else f"{headline}: {subject}",
        "subject": subject,
        "when": utc_text(item.created_at),
        "from_version": payload.get("from") or payload.get("source"),
        "to_version": payload.get("to") or payload.get("target"),
        "active": payload.get("active"),
        "reason": payload.get("reason"),
        "incident_id": item.incident_id,
        "details": sorted((k, v) for k, v in payload.items()
                          if k not in SHOWN | HIDDEN and v not in (None, "")),
        "evidence": rows,
    }


def _probe(probe: dict[str, Any]) -> dict[str, Any]:
    latency = probe.get("latency_ms")
    return {
        "version": probe.get("version", "?"),
        "result": "ok" if probe.get("ok") else "FAIL",
        "failure": " ".join(str(probe.get(k)) for k in ("failure", "detail") if probe.get(k)),
        "latency": f"{latency:.1f} ms" if isinstance(latency, int | float) else "-",
        "at": utc_text(probe.get("at")),
    }


def render(items: Sequence[Item], *, dashboard_url: str, directory: Path | None = None
           ) -> Rendered:
    """Render a non-empty batch. Same notices, same email: nothing depends on the send time,
    so a retried batch carries the very same body."""
    if not items:
        raise ValueError("nothing to render")
    env = environment(directory)
    context = {
        "notices": [view(item) for item in items],
        "dashboard_url": dashboard_url,
    }
    return Rendered(
        subject=subject_for(items),
        text=env.get_template("notice.txt").render(context),
        html=env.get_template("notice.html").render(context),
    )
