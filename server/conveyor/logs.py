"""Structured logs on stderr (stdout is the stdio wire): one logfmt line per record."""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class LogfmtFormatter(logging.Formatter):
    def __init__(self, *, tracebacks: bool = True) -> None:
        super().__init__()
        self.tracebacks = tracebacks
        self._stamped = (-1, "")  # (second, its time stamp): one tuple, so a reader sees a pair

    def format(self, record: logging.LogRecord) -> str:
        # A line per finished job: formatting is on the engine's hot path, so each second's time
        # stamp is made once, and plain words (most values) are written as they are.
        second, stamp = self._stamped
        if int(record.created) != second:
            second = int(record.created)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(second))
            self._stamped = (second, stamp)
        parts = [f"time={stamp} level={record.levelname.lower()} logger={_quote(record.name)}"]
        action = getattr(record, "action", None)
        if action is not None:
            parts.append(f"action={_quote(action)}")
        parts.append(f"msg={_quote(record.getMessage())}")
        parts.extend(
            f"{key}={_quote(value)}"
            for key, value in record.__dict__.items()
            if value is not None and key not in _STANDARD and key != "action"
        )
        line = " ".join(parts)
        if record.exc_info and self.tracebacks:
            # exc_text when set: a run's secrets are redacted from it (secret_arguments.py).
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and _PLAIN.issuperset(text):
        return text
    return json.dumps(text) if (" " in text or "=" in text or '"' in text or not text) else text


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:/@")


def configure_logging(level: str = "INFO", *, tracebacks: bool = True) -> None:
    """Logfmt lines on stderr, from ``level`` up; ``tracebacks=False`` keeps each record one line."""
    # No record field these lines show needs the caller's frame, thread or process looked up:
    # skipped, as the logging HOWTO's "Optimization" section says (a line per job is hot).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(tracebacks=tracebacks))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("conveyor").setLevel(level)
