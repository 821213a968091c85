"""``GET /jobs/{job_id}/stream``: Server-Sent Events, one per state or progress change.

The stream opens with the job's current state (so a late client catches up), then sends
every change, and ends after the terminal state. Events are unnamed, so a browser's
``EventSource.onmessage`` receives them. ``sse-starlette`` sends the keep-alive comments,
notices a client that left, and ends open streams when the server shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from conveyor import strict_json
from conveyor.auth import Principal
from conveyor.events import Subscription
from conveyor.jobs.models import Job
from conveyor.runtime import Runtime
from conveyor.schemas import JobView

KEEP_ALIVE_SECONDS = 15.0
SEPARATOR = "\n"  # the line ending every SSE parser accepts, and this stream always used


async def stream_job(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    assert principal is not None
    job_id = request.path_params["job_id"]
    owner = principal.visible_owner
    job = await runtime.engine.get(job_id, owner=owner)  # JOB_NOT_FOUND answers before streaming starts
    runtime.streams.acquire(principal)  # RATE_LIMIT_EXCEEDED past the key's share of streams
    subscribing = runtime.events.subscribe(job_id)
    updates = subscribing.__enter__()
    try:
        job = await runtime.engine.get(job_id, owner=owner)  # again, subscribed: nothing falls in between
    except BaseException:
        _close(runtime, principal, subscribing)
        raise
    return HeldEventSource(
        _event_stream(job, updates),
        on_close=lambda: _close(runtime, principal, subscribing),
        headers={"Cache-Control": "no-cache"},
        ping=KEEP_ALIVE_SECONDS,
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep=SEPARATOR),
        sep=SEPARATOR,
    )


class HeldEventSource(EventSourceResponse):
    """A stream whose hold on its slot and subscription ends however the response ends: finished,
    failed, the client gone, or never started because the client left first (a generator's own
    ``finally`` would not run then)."""

    def __init__(
        self, content: AsyncIterator[ServerSentEvent], *, on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _close(runtime: Runtime, principal: Principal, subscribing: AbstractContextManager[Subscription]) -> None:
    subscribing.__exit__(None, None, None)
    runtime.streams.release(principal)


async def _event_stream(job: Job, updates: Subscription) -> AsyncIterator[ServerSentEvent]:
    number = 1
    yield _event(number, job)
    last = job
    while not last.status.terminal:
        # Changes come from this process's engine, and from others' through the store's watch.
        nxt = await updates.next()
        if _same(nxt, last):
            continue
        number, last = number + 1, nxt
        yield _event(number, nxt)


def _event(number: int, job: Job) -> ServerSentEvent:
    return ServerSentEvent(strict_json.dumps(JobView.of(job)), id=str(number), sep=SEPARATOR)


def _same(a: Job, b: Job) -> bool:
    return (a.status, a.progress, a.attempts, a.cancel_requested_at) == (
        b.status,
        b.progress,
        b.attempts,
        b.cancel_requested_at,
    )
