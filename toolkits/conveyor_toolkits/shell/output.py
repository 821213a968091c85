"""A command's output stream as lines: each one handed on as it comes, the newest kept."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

CUT = "…[cut]"


class StreamTail:
    """One stream (stdout or stderr) split into lines. The newest lines are kept, at most
    ``max_lines`` of them and ``max_bytes`` in all; ``truncated`` says older ones were dropped.
    ``clean`` is applied to every line before anyone sees it (it redacts the run's secrets)."""

    def __init__(
        self, name: str, *, max_lines: int, max_bytes: int, max_line_chars: int, clean: Callable[[str], str]
    ) -> None:
        self.name = name
        self.total_bytes = 0
        self.truncated = False
        self._lines: deque[str] = deque()
        self._kept_bytes = 0
        self._pending = b""
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._max_line_chars = max_line_chars
        self._clean = clean

    def feed(self, chunk: bytes) -> list[str]:
        """The lines this chunk completes (a line too long to wait for counts as complete)."""
        self.total_bytes += len(chunk)
        *complete, self._pending = (self._pending + chunk).split(b"\n")
        if len(self._pending) > self._max_line_chars * 4:  # 4: the most bytes a UTF-8 character takes
            complete.append(self._pending)
            self._pending = b""
        return [self._keep(raw) for raw in complete]

    def finish(self) -> list[str]:
        """The last line, if the stream ended without a newline."""
        pending, self._pending = self._pending, b""
        return [self._keep(pending)] if pending else []

    @property
    def text(self) -> str:
        return "\n".join(self._lines)

    def last(self, count: int) -> str:
        return "\n".join(list(self._lines)[-count:])

    def _keep(self, raw: bytes) -> str:
        # What a terminal would show: a carriage return (a progress bar) starts the line over.
        text = raw.rstrip(b"\r").rsplit(b"\r", 1)[-1].decode("utf-8", errors="replace")
        if len(text) > self._max_line_chars:
            text = text[: self._max_line_chars] + CUT
        line = self._clean(text)
        self._lines.append(line)
        self._kept_bytes += len(line.encode()) + 1
        while len(self._lines) > self._max_lines or (
            self._kept_bytes > self._max_bytes and len(self._lines) > 1
        ):
            self._kept_bytes -= len(self._lines.popleft().encode()) + 1
            self.truncated = True
        return line
