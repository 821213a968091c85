"""Pushes a 2025-11-25 task's status and progress to the client that created it.

After the ``CreateTaskResult`` reply the request's channel is closed, so notifications go
on the connection's standalone channel (over HTTP: the GET stream), progress with the
token of the original ``tools/call``. Each watch ends when its task does, or when the
client is gone; all of them belong to the task group the server's lifespan opens.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import anyio.abc
import mcp_types as types
from mcp.server.session import ServerSession

from conveyor.events import JobEvents
from conveyor.jobs.models import Job
from conveyor.mcp_server.task_views import mcp_progress, task_2025

logger = logging.getLogger("conveyor.mcp.tasks")


class TaskNotifier:
    def __init__(
        self, events: JobEvents, load: Callable[[str], Awaitable[Job]], *, poll_interval_ms: int
    ) -> None:
        self.events = events
        self.load = load
        self.poll_interval_ms = poll_interval_ms
        self._tg: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    def watch(self, job_id: str, session: ServerSession, progress_token: str | int | None) -> None:
        if self._tg is None:
            return  # no lifespan (a bare in-process call): clients poll tasks/get, as the spec tells them to
        self._tg.start_soon(self._follow, job_id, session, progress_token)

    async def _follow(self, job_id: str, session: ServerSession, progress_token: str | int | None) -> None:
        last_status: str | None = None
        last_progress: dict[str, Any] | None = None
        try:
            with self.events.subscribe(job_id) as updates:
                job = await self.load(job_id)  # after subscribing: no change can fall in between
                while True:
                    # Only new progress: the spec wants each notification to move forward.
                    if progress_token is not None and job.progress and job.progress != last_progress:
                        last_progress = job.progress
                        await _send_progress(session, progress_token, job)
                    view = task_2025(job, poll_interval_ms=self.poll_interval_ms)
                    if view["status"] != last_status:
                        last_status = view["status"]
                        notification = types.TaskStatusNotification(
                            params=types.TaskStatusNotificationParams.model_validate(view)
                        )
                        await session.send_notification(cast(Any, notification))
                    if job.status.terminal:
                        return
                    job = await updates.next()
        except Exception:  # the client went away: nothing left to tell
            logger.debug("task notifications stopped", exc_info=True, extra={"action": "task.notify_stopped"})


async def _send_progress(session: ServerSession, token: str | int, job: Job) -> None:
    await session.send_progress_notification(token, *mcp_progress(job.progress or {}))
