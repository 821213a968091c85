"""Other processes' changes to jobs in PostgreSQL, as they commit: LISTEN, with a poll as fallback.

The jobs table's trigger announces each change on the schema's channel as
``<job_id> <version> <changed_by>``. The listener skips its own process's changes, gathers the
others' while it reads, and reads the changed jobs in one statement. When the listening
connection drops (a restart, a failover, a network cut) it polls by version, slowly, until it
is back. Versions come from a sequence, so a transaction can commit a version lower than one
already seen: each poll looks back over what was seen ``LOOKBACK_S`` before, and a job is
passed on only for a version newer than the last one passed on.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import asyncpg

from conveyor.jobs.models import Job

logger = logging.getLogger("conveyor.store")

HEALTH_CHECK_S = 5.0  # how often the quiet listening connection is asked whether it still works
HEALTH_TIMEOUT_S = 3.0
POLL_S = 1.0  # the fallback's pace, while the listening connection is down
LOOKBACK_S = 5.0  # a write transaction that takes longer than this may be missed by a poll
PAGE = 500
REMEMBERED_JOBS = 20_000  # the newest version passed on, per job, for the most recent jobs


class ChangeListener:
    def __init__(
        self,
        *,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channel: str,
        origin: str,
        read_jobs: Callable[[list[str]], Awaitable[list[Job]]],
        read_changes_since: Callable[[int, int], Awaitable[list[Job]]],
        read_last_version: Callable[[], Awaitable[int]],
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._origin = origin
        self._read_jobs = read_jobs
        self._read_changes_since = read_changes_since
        self._read_last_version = read_last_version
        self._pending: dict[str, int] = {}  # announced, not read yet: job id -> version
        self._announced = anyio.Event()
        self._lost = anyio.Event()  # the listening connection ended
        self._passed: OrderedDict[str, int] = OrderedDict()  # job id -> newest version passed on
        self._highest = 0  # the highest version seen announced or read, by anyone
        self._marks: deque[tuple[float, int]] = deque()  # (monotonic time, highest version then)

    async def run(
        self,
        on_change: Callable[[list[Job]], None],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        self._highest = await self._read_last_version()  # a first poll starts here, not at zero
        self._mark()
        while True:
            conn = await self._listen(first=not started)
            if conn is None:  # down: poll until the connection is back
                await self._poll(on_change)
                await anyio.sleep(POLL_S)
                continue
            try:
                if not started:
                    task_status.started()
                    started = True
                else:  # back after a drop: what changed meanwhile, once
                    await self._poll(on_change)
                    logger.info("change listener back", extra={"action": "store.listen_back"})
                await self._follow(conn, on_change)
            finally:
                with anyio.CancelScope(shield=True):
                    await _close(conn)
            logger.warning("change listener lost its connection", extra={"action": "store.listen_lost"})

    async def _listen(self, *, first: bool) -> asyncpg.Connection | None:
        try:
            conn = await self._connect()
        except Exception:
            if first:
                raise  # at start, the store was just opened: a failure here is worth knowing
            return None
        self._lost = anyio.Event()
        conn.add_termination_listener(lambda _conn: self._lost.set())
        await conn.add_listener(self._channel, self._on_notification)
        return conn

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        job_id, version_text, changed_by = [*payload.split(" ", 2), "", ""][:3]
        version = int(version_text) if version_text.isdigit() else 0
        self._highest = max(self._highest, version)
        self._mark()
        if changed_by == self._origin:
            return
        if version > self._pending.get(job_id, 0):
            self._pending[job_id] = version
        self._announced.set()

    async def _follow(self, conn: asyncpg.Connection, on_change: Callable[[list[Job]], None]) -> None:
        """Pass announced changes on until the connection is lost."""
        while not self._lost.is_set():
            with anyio.move_on_after(HEALTH_CHECK_S) as quiet:
                await self._announced.wait()
            if quiet.cancelled_caught:
                if not await _alive(conn):
                    return
                continue
            self._announced = anyio.Event()
            pending, self._pending = self._pending, {}
            try:
                jobs = await self._read_jobs(list(pending))
            except Exception:  # the store is down for a moment: read them again next time
                logger.warning(
                    "changed jobs unread", exc_info=True, extra={"action": "store.listen_read_failed"}
                )
                for job_id, version in pending.items():
                    self._pending.setdefault(job_id, version)
                self._announced.set()
                await anyio.sleep(POLL_S)
                continue
            self._pass_on(jobs, on_change)

    async def _poll(self, on_change: Callable[[list[Job]], None]) -> None:
        """Read every change since ``LOOKBACK_S`` before the last look, page by page."""
        since = self._since()
        self._mark()
        try:
            while True:
                jobs = await self._read_changes_since(since, PAGE)
                self._pass_on(jobs, on_change)
                if len(jobs) < PAGE:
                    return
                since = jobs[-1].version
        except Exception:
            logger.warning("change poll failed", exc_info=True, extra={"action": "store.poll_failed"})

    def _pass_on(self, jobs: list[Job], on_change: Callable[[list[Job]], None]) -> None:
        fresh = []
        for job in jobs:
            self._highest = max(self._highest, job.version)
            if job.version <= self._passed.get(job.job_id, 0):
                continue  # passed on already, or older than what was
            self._passed[job.job_id] = job.version
            self._passed.move_to_end(job.job_id)
            fresh.append(job)
        while len(self._passed) > REMEMBERED_JOBS:
            self._passed.popitem(last=False)
        if fresh:
            on_change(fresh)

    def _mark(self) -> None:
        now = time.monotonic()
        if not self._marks or now - self._marks[-1][0] >= 1.0:
            self._marks.append((now, self._highest))
        while len(self._marks) > 2 and now - self._marks[1][0] >= LOOKBACK_S:
            self._marks.popleft()

    def _since(self) -> int:
        """The highest version seen at least LOOKBACK_S ago (the oldest mark, if none is that old)."""
        now = time.monotonic()
        old_enough = [version for at, version in self._marks if now - at >= LOOKBACK_S]
        if old_enough:
            return old_enough[-1]
        return self._marks[0][1] if self._marks else self._highest


async def _alive(conn: asyncpg.Connection) -> bool:
    try:
        with anyio.fail_after(HEALTH_TIMEOUT_S):
            await conn.fetchval("SELECT 1")
        return True
    except Exception:
        return False


async def _close(conn: asyncpg.Connection) -> None:
    try:
        with anyio.move_on_after(1):
            await conn.close()
    except Exception:
        conn.terminate()
