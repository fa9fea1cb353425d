"""Logs: one JSON object per line, with passwords and credentials never written."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from monitor.ops.logs import (
    REDACTED,
    configure_logging,
    redact_text,
    redact_value,
    uvicorn_log_config,
)


@pytest.fixture
def stream():
    """A configured root logger writing to a buffer; the previous root setup is restored."""
    names = ["uvicorn", "uvicorn.error", "uvicorn.access", "apscheduler", "httpx", "httpcore"]
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    buffer = io.StringIO()
    configure_logging("DEBUG", stream=buffer)
    yield buffer
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_it_writes_one_json_object_per_line_with_extras(stream):
    log = logging.getLogger("monitor.test")
    log.info("probe %s ok", "v1", extra={"version": "v1", "request_id": "r-1", "event": "probe"})
    log.warning("multi\nline message")

    first, second = lines(stream)
    assert first["msg"] == "probe v1 ok"
    assert (first["level"], first["logger"]) == ("INFO", "monitor.test")
    assert (first["version"], first["request_id"], first["event"]) == ("v1", "r-1", "probe")
    assert first["ts"].endswith("Z") and first["ts"][:4].isdigit()
    assert second["msg"] == "multi\nline message"


def test_it_redacts_passwords_authorization_headers_and_basic_credentials(stream):
    logging.getLogger("monitor.web").warning(
        "login from %s with header Basic dXNlcjpwYXNz", "10.0.0.1",
        extra={"password": "hunter2", "headers": {"Authorization": "Basic dXNlcjpwYXNz",
                                                  "Accept": "text/html"},
               "smtp_password": "s3cret", "user": "alice"},
    )

    raw = stream.getvalue()
    assert "hunter2" not in raw and "dXNlcjpwYXNz" not in raw and "s3cret" not in raw
    (entry,) = lines(stream)
    assert entry["password"] == REDACTED
    assert entry["smtp_password"] == REDACTED
    assert entry["headers"] == {"Authorization": REDACTED, "Accept": "text/html"}
    assert entry["user"] == "alice"
    assert entry["msg"] == f"login from 10.0.0.1 with header Basic {REDACTED}"


def test_it_redacts_secrets_in_tracebacks(stream):
    try:
        raise ValueError("bad header Authorization: Bearer eyJhbGciOi.payload.sig")
    except ValueError:
        logging.getLogger("monitor").exception("request failed")

    (entry,) = lines(stream)
    assert "eyJhbGciOi" not in entry["exc"]
    assert "ValueError" in entry["exc"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: {REDACTED}"),
        ("got Bearer abc.DEF-123", f"got Bearer {REDACTED}"),
        ("password=hunter2 user=bob", f"password={REDACTED} user=bob"),
        ('{"smtp_password": "pw1"}', f'{{"smtp_password": "{REDACTED}"}}'),
        ("chaos_token: 0123456789abcdef", f"chaos_token: {REDACTED}"),
        ("smtp://mailer:pa55@smtp.example.org:465", f"smtp://mailer:{REDACTED}@smtp.example.org:465"),
        # ordinary words are left alone
        ("Basic checks passed for v1", "Basic checks passed for v1"),
        ("passive probe of v2 failed", "passive probe of v2 failed"),
    ],
)
def test_it_redacts_credentials_in_free_text(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("password", "x", REDACTED),
        ("Authorization", "Basic abc", REDACTED),
        ("csrf_token", "abc", REDACTED),
        ("X-Auth-Token", "abc", REDACTED),
        ("passive", True, True),
        ("request_id", "r-1", "r-1"),
        ("headers", [("authorization", "Basic dXNlcjpwYXNz")], [["authorization", REDACTED]]),
        ("password", None, None),
    ],
)
def test_it_redacts_secret_looking_keys(key, value, expected):
    assert redact_value(key, value) == expected


def test_it_configures_uvicorn_with_json_lines_and_no_access_log(capsys):
    logging.config.dictConfig(uvicorn_log_config())
    try:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42,
                                                extra={"color_message": "\x1b[1mStarted"})
        logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /?password=pw HTTP/1.1" 200')

        err = capsys.readouterr().err.splitlines()
        assert [json.loads(line) for line in err] == [
            {**json.loads(err[0]), "msg": "Started server process [42]", "logger": "uvicorn.error"}
        ]
        assert "color_message" not in err[0]
    finally:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
