"""In-process fan-out of job state changes to whoever waits on them.

Waiters (``wait_seconds``, event streams, MCP notifications) subscribe to one job or to
all; the engine publishes each new job state. A subscription buffers a bounded number of
states and drops the oldest first, so the newest state, and so a terminal one, is never lost.
``Fanout`` does the same for any other kind of item; ``Wakeup`` wakes one consumer (the webhook
deliverer) without losing a wake that came while it was busy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import anyio

from conveyor.jobs.models import Job

T = TypeVar("T")


class Mailbox(Generic[T]):
    """What one subscriber has yet to take, oldest first."""

    def __init__(self, buffer: int = 256) -> None:
        self._items: deque[T] = deque(maxlen=buffer)
        self._ready = anyio.Event()

    def push(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()

    async def next(self) -> T:
        while not self._items:
            self._ready = anyio.Event()
            await self._ready.wait()
        return self._items.popleft()


Subscription = Mailbox[Job]


class JobEvents:
    """Every state of a job this process learns of: its own writes, and (through the store's
    change watch) other processes'. ``remote`` marks the latter."""

    def __init__(self) -> None:
        self._by_job: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._all_local: set[Subscription] = set()

    def publish(self, job: Job, *, remote: bool = False) -> None:
        for subscription in (*self._by_job.get(job.job_id, ()), *self._all):
            subscription.push(job)
        if not remote:
            for subscription in self._all_local:
                subscription.push(job)

    @contextmanager
    def subscribe(self, job_id: str | None = None, *, local_only: bool = False) -> Iterator[Subscription]:
        """Changes of one job, or of every job when ``job_id`` is None (with ``local_only``,
        only those this process made, such as the runs it did)."""
        subscription = Subscription()
        if job_id is not None:
            group = self._by_job.setdefault(job_id, set())
        else:
            group = self._all_local if local_only else self._all
        group.add(subscription)
        try:
            yield subscription
        finally:
            group.discard(subscription)
            if job_id is not None and not group:
                self._by_job.pop(job_id, None)


class Fanout(Generic[T]):
    """Every item published goes to every current subscriber (bounded, oldest dropped first)."""

    def __init__(self) -> None:
        self._subscriptions: set[Mailbox[T]] = set()

    def publish(self, item: T) -> None:
        for subscription in self._subscriptions:
            subscription.push(item)

    @contextmanager
    def subscribe(self) -> Iterator[Mailbox[T]]:
        subscription = Mailbox[T]()
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)


class Wakeup:
    """A wake-up call for one consumer that does not get lost: a ``set`` made while the consumer
    was busy (between its ``clear`` and its ``wait``) makes that ``wait`` return at once."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()
