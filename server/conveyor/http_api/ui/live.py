"""``GET /ui/events``: what the pages show, live, as Server-Sent Events (sse-starlette).

Without ``job_id`` (the jobs page): a ``jobs`` event with the newest jobs the caller may see (a
snapshot, taken after subscribing, so no change falls in between), a ``figures`` event, then a
``job`` event for each change of a job the caller may see, and fresh ``figures`` after changes,
at most once every ``FRESH_SECONDS``. With ``job_id`` (a job's page): ``job`` events, the job as
it is (with its arguments as stored, secrets sealed away) and then each change, ending after it
finishes.

Changes come from the engine's job events, which carry other processes' changes too; changes
that come close together are sent together, the latest state of each job. Each ``data`` is JSON;
a job is ``JobView``, as REST answers it. A stream holds one of the key's event-stream slots
while it is open, and ends once its session does (a revoked key), which it looks at every
``RECHECK_SECONDS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from conveyor import strict_json
from conveyor.auth import Principal
from conveyor.errors import ConveyorError, Unauthorized
from conveyor.events import Subscription
from conveyor.http_api.endpoints import Handler, read_query
from conveyor.http_api.stream import HeldEventSource
from conveyor.http_api.ui.figures import FRESH_SECONDS, Figures
from conveyor.http_api.ui.sessions import Sessions
from conveyor.jobs.models import Job, JobStatus
from conveyor.runtime import Runtime
from conveyor.schemas import JobView

PING_SECONDS = 15
SNAPSHOT_LIMIT = 50
BATCH_SECONDS = 0.1
RECHECK_SECONDS = 15.0  # how often an open stream looks again at its session (a revoked key ends it)


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str | None = Field(None, min_length=1)
    status: JobStatus | None = None
    tool: str | None = None
    limit: int = Field(SNAPSHOT_LIMIT, ge=1, le=100)


def events_endpoint(figures: Figures, sessions: Sessions) -> Handler:
    async def ui_events(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
        assert principal is not None, "SessionAccess signs in every data request"
        query = read_query(request, EventsQuery)
        owner = principal.visible_owner
        if query.job_id is not None:
            await runtime.engine.get(query.job_id, owner=owner)  # JOB_NOT_FOUND before the stream starts
        runtime.streams.acquire(principal)  # RATE_LIMIT_EXCEEDED past the key's share of streams
        subscribing = runtime.events.subscribe(query.job_id)
        updates = subscribing.__enter__()

        def close() -> None:
            subscribing.__exit__(None, None, None)
            runtime.streams.release(principal)

        async def still_signed_in() -> bool:
            try:
                await sessions.principal(request.headers)
            except Unauthorized:
                return False
            except ConveyorError:  # the store is busy or away: not a reason to end a session
                pass
            return True

        try:  # the first state is read after subscribing: nothing falls in between
            if query.job_id is not None:
                job = await runtime.engine.get(query.job_id, owner=owner)
                stream = _one_job(job, updates, still_signed_in)
            else:
                jobs, total = await runtime.engine.list(
                    owner=owner, status=query.status, tool=query.tool, limit=query.limit
                )
                first = {"jobs": [JobView.of(j) for j in jobs], "total": total, "limit": query.limit}
                feed = _Feed(
                    updates, _visible_to(owner, query.tool), lambda: figures.of(principal), still_signed_in
                )
                stream = _job_list(first, feed)
        except BaseException:
            close()
            raise
        return HeldEventSource(stream, on_close=close, ping=PING_SECONDS)

    return ui_events


@dataclass(frozen=True)
class _Feed:
    updates: Subscription
    visible: Callable[[Job], bool]
    figures: Callable[[], Awaitable[dict[str, Any]]]
    still_signed_in: Callable[[], Awaitable[bool]]


def _visible_to(owner: str | None, tool: str | None) -> Callable[[Job], bool]:
    # The status filter is the page's to apply: a job leaving the status shown must reach it too.
    def visible(job: Job) -> bool:
        return (owner is None or job.owner == owner) and (tool is None or job.tool == tool)

    return visible


async def _one_job(
    job: Job, updates: Subscription, still_signed_in: Callable[[], Awaitable[bool]]
) -> AsyncIterator[ServerSentEvent]:
    yield _event("job", _with_arguments(job))
    while not job.status.terminal:
        with anyio.move_on_after(RECHECK_SECONDS) as waited:
            job = await updates.next()
        if waited.cancelled_caught:
            if not await still_signed_in():
                return  # the key was revoked: the page's next request finds the session over
            continue
        yield _event("job", _with_arguments(job))


async def _job_list(first: dict[str, Any], feed: _Feed) -> AsyncIterator[ServerSentEvent]:
    yield _event("jobs", first)
    yield _event("figures", await feed.figures())
    now = anyio.current_time()
    changed, figures_due, recheck_due = False, now + FRESH_SECONDS, now + RECHECK_SECONDS
    while True:
        batch: dict[str, Job] = {}
        # Wait no longer than the next figures (after a change) or the next look at the session.
        deadline = min(figures_due, recheck_due) if changed else recheck_due
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            await _collect(feed.updates, batch)
        for job in batch.values():
            if feed.visible(job):
                yield _event("job", JobView.of(job))
        changed = changed or bool(batch)
        now = anyio.current_time()
        if changed and now >= figures_due:
            yield _event("figures", await feed.figures())
            changed, figures_due = False, anyio.current_time() + FRESH_SECONDS
        if now >= recheck_due:
            if not await feed.still_signed_in():
                return  # the key was revoked: the page's next request finds the session over
            recheck_due = anyio.current_time() + RECHECK_SECONDS


async def _collect(updates: Subscription, batch: dict[str, Job]) -> None:
    """The next change, and those that follow within ``BATCH_SECONDS``, the latest state of each
    job: however fast jobs change, a page gets a few batches a second, not an event per change."""
    job = await updates.next()
    batch[job.job_id] = job
    with anyio.move_on_after(BATCH_SECONDS):
        while True:
            job = await updates.next()
            batch[job.job_id] = job  # in the order jobs first changed: new jobs stay oldest first


def _with_arguments(job: Job) -> dict[str, Any]:
    """The job view plus its arguments as the job keeps them, for its page: each secret argument
    is kept sealed apart, its place holding a marker, and credentials are never arguments."""
    return {**JobView.of(job), "arguments": job.arguments}


def _event(name: str, data: Any) -> ServerSentEvent:
    return ServerSentEvent(strict_json.dumps(data), event=name)
