"""Progress values and a relay that coalesces bursts into the latest value.

A chatty tool may report thousands of times a second; the relay keeps only the newest
report, so whoever drains it (an MCP progress notification, a database write) sees
each change at most once per drain and never falls behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from conveyor import strict_json


@dataclass(frozen=True, slots=True)
class Progress:
    current: float
    total: float | None = None
    message: str | None = None
    step: str | None = None

    @property
    def percentage(self) -> float | None:
        if not self.total:
            return None
        return round(min(100.0, max(0.0, self.current / self.total * 100)), 2)

    def to_dict(self) -> dict[str, object]:
        """The wire shape shared by jobs, REST and MCP (the seed's ``progress`` object)."""
        shape: dict[str, object] = {
            "current_step": self.step if self.step is not None else self.current,
            "total_steps": self.total,
            "percentage": self.percentage,
        }
        if self.message is not None:
            shape["message"] = self.message
        # A tool's own numbers and text: NaN or a lone surrogate must not reach a client.
        return strict_json.sanitized(shape)  # type: ignore[no-any-return]


ProgressSink = Callable[[Progress], Awaitable[None]]


class ProgressRelay:
    """Latest-value mailbox between a tool (producer) and one async consumer."""

    def __init__(self, sink: ProgressSink, min_interval: float = 0.0) -> None:
        self._sink = sink
        self._min_interval = min_interval
        self._latest: Progress | None = None
        self._ready = anyio.Event()

    def offer(self, progress: Progress) -> None:
        self._latest = progress
        self._ready.set()

    async def drain_forever(self) -> None:
        while True:
            await self._ready.wait()
            await self.flush()
            if self._min_interval:
                await anyio.sleep(self._min_interval)  # throttle: reports in between coalesce

    async def flush(self) -> None:
        self._ready = anyio.Event()
        latest, self._latest = self._latest, None
        if latest is not None:
            await self._sink(latest)
