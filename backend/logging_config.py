"""Logging of every process (API, worker, CLI): one line per event on stderr, as text or JSON.

`AQPL_LOG_FORMAT=text` (the default) writes lines for people:
    2026-01-01T12:00:00.123Z INFO aqpl.audit: failed login event=login.failed username=bob address=10.0.0.7
`AQPL_LOG_FORMAT=json` writes one JSON object a line, for log collectors:
    {"time": "2026-01-01T12:00:00.123Z", "level": "info", "logger": "aqpl.audit", "message": "failed login",
     "event": "login.failed", "username": "bob", "address": "10.0.0.7"}

Entry points apply it once at start: `aqpl serve` hands `logging_config` to uvicorn (which applies
it in each API process), the worker from Celery's `setup_logging` signal. Values that came from a
client (a username) are escaped, so no one can forge a line; anything shaped like an API token is
masked, so a token that reaches a message by mistake is not written.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
from datetime import UTC, datetime
from typing import Any

from backend.audit import AUDIT_LOGGER
from backend.settings import Settings

# backend.security.new_token: "aqpl_" + 43 url-safe characters (256 bits). No boundaries asked for:
# escaping may put letters right before it ("\x0a"), and masking too much costs nothing.
TOKEN_SHAPE = re.compile(r"aqpl_[A-Za-z0-9_-]{43}")
TOKEN_MASK = "aqpl_[redacted]"  # noqa: S105  # what replaces a token
# C0 and C1 controls (a newline would start a forged line) and bidirectional overrides.
_UNSAFE = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# Attributes every LogRecord has: anything else was passed in `extra` and is a field of the event.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_UVICORN_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _escape(text: str) -> str:
    return text.translate(_UNSAFE)


def _mask(text: str) -> str:
    return TOKEN_SHAPE.sub(TOKEN_MASK, text)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: `event`, an audit event's `fields`, other `extra` values,
    and those of uvicorn's access lines (client, method, path, http_version, status)."""
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _RECORD_ATTRIBUTES or key.startswith("_") or key == "color_message":
            continue
        if key == "fields" and isinstance(value, dict):
            fields.update(value)
        else:
            fields[key] = value
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        fields.update(zip(_UVICORN_ACCESS_FIELDS, record.args, strict=True))
    return fields


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`; a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, f"{record.name}:", _escape(record.getMessage())]
        for key, value in event_fields(record).items():
            parts.append(f"{key}={_text_value(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return _mask(line)


def _text_value(value: Any) -> str:
    if isinstance(value, str) and value and re.fullmatch(r"[\w.:/@+-]+", value):
        return _escape(value)
    return _escape(json.dumps(value, ensure_ascii=False, default=str))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the event's fields, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in event_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii: every control and bidi character is escaped, so one object stays one line.
        return _mask(json.dumps(entry, default=str))


def logging_config(settings: Settings) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a process: everything to stderr through one formatter."""
    level = settings.log_level.upper()
    formatter = JsonFormatter if settings.log_format == "json" else TextFormatter
    # uvicorn's loggers bring no handlers of their own: their lines go through the root's formatter.
    passthrough = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"aqpl": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"stderr": {"()": f"{__name__}.{stderr_handler.__qualname__}", "formatter": "aqpl"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level, **passthrough},
            "uvicorn.error": {"level": level, **passthrough},
            "uvicorn.access": {"level": level, **passthrough},
            # Audit events are kept at every log level: they are the record of who did what.
            AUDIT_LOGGER: {"level": "INFO", **passthrough},
        },
    }


def stderr_handler() -> logging.Handler:
    """The process's one handler; Python's warnings go through it too (one formatted line each,
    not two raw ones), also in the API processes uvicorn starts with `logging_config`."""
    logging.captureWarnings(True)
    return logging.StreamHandler(sys.stderr)


def configure_logging(settings: Settings) -> None:
    """Apply `logging_config` to this process (again: it replaces the handlers, adds none)."""
    logging.config.dictConfig(logging_config(settings))
