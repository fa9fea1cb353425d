"""JSON logs, one line per event, with secrets redacted before anything is written.

`configure_logging()` installs one stderr handler on the root logger; `uvicorn_log_config()`
gives uvicorn the same format (and no access log: the web layer logs requests itself).

Redaction is by name and by shape: extra fields whose key looks secret (password, token,
secret, authorization, cookie, ...) become "[redacted]", at any depth of dicts and lists; in
messages and tracebacks, `Basic xxx` / `Bearer xxx` credentials and `password=xxx`-style pairs
lose their value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

REDACTED = "[redacted]"

SECRET_KEY = re.compile(
    r"(^|[_-])(password|passwd|pwd|pass|secret|token|authorization|cookie|api_?key"
    r"|credentials?)($|[_-])",
    re.IGNORECASE,
)
_CREDENTIAL = re.compile(r"\b((?i:basic|bearer|digest))(\s+)([A-Za-z0-9._~+/=:-]{6,})")
_SECRET_PAIR = re.compile(
    r"""(?P<key>\b[\w-]*(?:password|passwd|pwd|secret|token|authorization|api[_-]?key)[\w-]*)"""
    r"""(?P<sep>["']?\s*[:=]\s*["']?)(?P<value>(?:Basic\s+|Bearer\s+)?[^\s"',;&}]+)""",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE)


def _hide_credential(match: re.Match[str]) -> str:
    # A credential has digits, capitals or base64 punctuation after its first character;
    # an English word after "Basic" ("Basic checks passed") does not.
    if re.search(r"[0-9A-Z=+/._~:-]", match.group(3)[1:]):
        return f"{match.group(1)}{match.group(2)}{REDACTED}"
    return str(match.group(0))


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}  # color_message: uvicorn's ANSI copy


def redact_text(text: str) -> str:
    """Hide credentials that appear inside free text."""
    text = _CREDENTIAL.sub(_hide_credential, text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)


def redact_value(key: str, value: Any) -> Any:
    """Redact a structured value: secret-looking keys lose their value, strings are scanned."""
    if SECRET_KEY.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # Header lists like [("authorization", "Basic ...")] hide their pairs' values too.
        if len(value) == 2 and isinstance(value[0], str | bytes) and SECRET_KEY.search(
                value[0] if isinstance(value[0], str) else value[0].decode("latin-1")):
            return [value[0], REDACTED]
        return [redact_value(key, v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactFilter(logging.Filter):
    """Rewrites the record in place, so every handler sees the redacted version."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string still gets logged, just not formatted
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        for key in extra_fields(record):
            setattr(record, key, redact_value(key, getattr(record, key)))
        return True


def extra_fields(record: logging.LogRecord) -> list[str]:
    return [k for k in vars(record) if k not in _STANDARD and not k.startswith("_")]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, msg, extras, exc (traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        for key in extra_fields(record):
            if key not in entry:
                entry[key] = redact_value(key, getattr(record, key))
        if record.exc_info:
            entry["exc"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact_text(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class _MonitorHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we installed, so configuring twice replaces it."""


def make_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = _MonitorHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    return handler


def configure_logging(level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record through one redacting JSON handler on `stream` (stderr)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _MonitorHandler)]:
        root.removeHandler(old)
    handler = make_handler(stream)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """For `uvicorn.Config(log_config=...)`: JSON lines on stderr, access log off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "monitor.ops.logs.RedactFilter"}},
        "formatters": {"json": {"()": "monitor.ops.logs.JsonFormatter"}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["redact"],
            },
            "null": {"class": "logging.NullHandler"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": ["null"], "level": "CRITICAL", "propagate": False},
        },
    }
