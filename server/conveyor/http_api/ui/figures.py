"""The figures at the top of the jobs page: queue depth and jobs by status.

Whoever may read ``/metrics`` (admins, or anyone with ``metrics_public``) sees its figures, the
server's, from ``store.count_by_status()`` as ``/metrics`` reads them. Everyone else sees the
queue depth (public in ``/healthz`` too) and their own jobs by status. Every open page asks
after each change, so the answers are shared and kept for ``FRESH_SECONDS``.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from conveyor.auth import Principal
from conveyor.jobs.models import JobStatus
from conveyor.runtime import Runtime

FRESH_SECONDS = 1.0
MAX_KEPT = 1024  # owners whose figures are kept at once


class Figures:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._kept: dict[str | None, tuple[float, dict[str, Any]]] = {}  # owner (None: the server) -> figures
        self._lock = anyio.Lock()

    def sees_server(self, principal: Principal) -> bool:
        return principal.is_admin or self.runtime.settings.metrics_public

    async def of(self, principal: Principal) -> dict[str, Any]:
        owner = None if self.sees_server(principal) else principal.id
        async with self._lock:  # one count at a time, however many pages ask
            kept = self._kept.get(owner)
            if kept is not None and time.monotonic() - kept[0] < FRESH_SECONDS:
                return kept[1]
            figures = await (self._server() if owner is None else self._owner(owner))
            if len(self._kept) >= MAX_KEPT:
                self._kept.clear()
            self._kept[owner] = (time.monotonic(), figures)
            return figures

    async def _server(self) -> dict[str, Any]:
        counts = await self.runtime.engine.store.count_by_status()
        return {
            "scope": "server",
            "queue_depth": counts.get(JobStatus.QUEUED, 0),
            "by_status": {str(status): counts.get(status, 0) for status in JobStatus},
        }

    async def _owner(self, owner: str) -> dict[str, Any]:
        by_status = {}
        for status in JobStatus:
            _, total = await self.runtime.engine.list(owner=owner, status=status, limit=1)
            by_status[str(status)] = total
        depth = await self.runtime.engine.store.queue_depth()
        return {"scope": "yours", "queue_depth": depth, "by_status": by_status}
