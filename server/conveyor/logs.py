"""Structured logs on stderr (stdout is the stdio wire): one logfmt line per record."""

from __future__ import annotations

import json
import logging
import sys

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class LogfmtFormatter(logging.Formatter):
    def __init__(self, *, tracebacks: bool = True) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "action": getattr(record, "action", None),
            "msg": record.getMessage(),
        }
        fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != "action"})
        line = " ".join(f"{key}={_quote(value)}" for key, value in fields.items() if value is not None)
        if record.exc_info and self.tracebacks:
            # exc_text when set: a run's secrets are redacted from it (secret_arguments.py).
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or "=" in text or '"' in text or not text) else text


def configure_logging(level: str = "INFO", *, tracebacks: bool = True) -> None:
    """Logfmt lines on stderr, from ``level`` up; ``tracebacks=False`` keeps each record one line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(tracebacks=tracebacks))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("conveyor").setLevel(level)
