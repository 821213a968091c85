"""In-process fan-out of job state changes to whoever waits on them.

Waiters (``wait_seconds``, event streams, MCP notifications) subscribe to one job or to
all; the engine publishes each new job state. A subscription buffers a bounded number of
states and drops the oldest first, so the newest state, and so a terminal one, is never lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from conveyor.jobs.models import Job


class Subscription:
    def __init__(self, buffer: int = 256) -> None:
        self._items: deque[Job] = deque(maxlen=buffer)
        self._ready = anyio.Event()

    def push(self, job: Job) -> None:
        self._items.append(job)
        self._ready.set()

    async def next(self) -> Job:
        while not self._items:
            self._ready = anyio.Event()
            await self._ready.wait()
        return self._items.popleft()


class JobEvents:
    def __init__(self) -> None:
        self._by_job: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()

    def publish(self, job: Job) -> None:
        for subscription in (*self._by_job.get(job.job_id, ()), *self._all):
            subscription.push(job)

    @contextmanager
    def subscribe(self, job_id: str | None = None) -> Iterator[Subscription]:
        """Changes of one job, or of every job when ``job_id`` is None."""
        subscription = Subscription()
        group = self._all if job_id is None else self._by_job.setdefault(job_id, set())
        group.add(subscription)
        try:
            yield subscription
        finally:
            group.discard(subscription)
            if job_id is not None and not group:
                self._by_job.pop(job_id, None)
