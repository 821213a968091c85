"""``GET /jobs/{job_id}/stream``: Server-Sent Events, one per state or progress change.

The stream opens with the job's current state (so a late client catches up), then sends
every change, and ends after the terminal state. Events are unnamed, so a browser's
``EventSource.onmessage`` receives them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from conveyor.auth import Principal
from conveyor.events import Subscription
from conveyor.jobs.models import Job
from conveyor.runtime import Runtime

KEEP_ALIVE_SECONDS = 15.0


async def stream_job(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    assert principal is not None
    job_id = request.path_params["job_id"]
    owner = principal.visible_owner
    subscribing = runtime.events.subscribe(job_id)
    updates = subscribing.__enter__()  # before the first read, so no change falls in between
    try:
        job = await runtime.engine.get(job_id, owner=owner)  # JOB_NOT_FOUND answers before streaming starts
    except BaseException:
        subscribing.__exit__(None, None, None)
        raise

    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in _event_stream(job, updates):
                yield chunk
        finally:
            subscribing.__exit__(None, None, None)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def _event_stream(job: Job, updates: Subscription) -> AsyncIterator[str]:
    number = 1
    yield _event(number, job)
    last = job
    while not last.status.terminal:
        # Changes come from this process's engine, and from others' through the store's watch.
        with anyio.move_on_after(KEEP_ALIVE_SECONDS) as waited:
            nxt = await updates.next()
        if waited.cancelled_caught:
            yield ": keep-alive\n\n"
            continue
        if _same(nxt, last):
            continue
        number, last = number + 1, nxt
        yield _event(number, nxt)


def _event(number: int, job: Job) -> str:
    return f"id: {number}\ndata: {json.dumps(job.to_public(), ensure_ascii=False)}\n\n"


def _same(a: Job, b: Job) -> bool:
    return (a.status, a.progress, a.attempts, a.cancel_requested_at) == (
        b.status,
        b.progress,
        b.attempts,
        b.cancel_requested_at,
    )
