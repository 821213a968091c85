"""SQLite job store: one connection in a process of its own, WAL, migrations by ``PRAGMA user_version``.

Any number of processes may share the database file. Every statement is an operation of
``sqlite_ops`` and goes through the group committer to the store's database process
(``sqlite_process``); a write that meets another process's write lock is retried until it
commits or ``write_timeout_s`` runs out (then ``StoreUnavailable``: nothing was committed). Each process
watches ``PRAGMA data_version`` to learn that another one committed, then reads what changed.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import random
import secrets
import sqlite3
import time
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from conveyor.errors import ConfigError, StoreUnavailable
from conveyor.jobs import group_commit, sqlite_ops
from conveyor.jobs.models import Job, NewJob
from conveyor.jobs.rows import Row
from conveyor.jobs.sql_store import SQLJobStore
from conveyor.jobs.sqlite_batches import Operation, T
from conveyor.jobs.sqlite_file import DatabaseFile, DatabaseFileLost
from conveyor.jobs.sqlite_ops import is_busy
from conveyor.jobs.sqlite_process import DatabaseProcessGone, SQLiteProcess
from conveyor.jobs.webhook_store import WebhookStore

logger = logging.getLogger("conveyor.store")

WATCH_INTERVAL_S = 0.05  # how often the watch looks: changes reach other processes this fast
WATCH_FULL_LOOK_TICKS = 20  # data_version is read at least this often (1 s), whatever the WAL file says
CHANGES_PAGE = 500
REVOCATIONS_SUFFIX = ".keys-revoked"  # replaced on every revocation: caches of keys check it
CLAIM_TIMEOUT_S = 0.5
# A full disk, I/O errors, a file that became read-only, unreadable or not a database any more.
_FAULT_CODES = (
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_NOTADB,
)
STORE_FAULT_RETRY_S = 5


def _store_fault(exc: sqlite3.OperationalError) -> Exception:
    """What a failing statement means to the caller: a full disk or an unusable file is the
    store being unavailable (coded, retryable: nothing was committed); anything else, a bug."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _FAULT_CODES:
        logger.error("database unavailable", extra={"action": "store.fault", "error": str(exc)})
        return StoreUnavailable(f"The database cannot be written: {exc}", retry_after=STORE_FAULT_RETRY_S)
    return exc


class SQLiteJobStore(SQLJobStore):
    ordered_commits = True  # one connection, one queue of statements

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", write_timeout_s: float = 10.0) -> None:
        self.path = str(path)
        self.write_timeout_s = write_timeout_s
        # Stamped on every job this store writes, so its watcher can skip its own changes.
        self.origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._synchronous = synchronous
        self._process: SQLiteProcess | None = None
        self._existed = True  # whether the file was there when the store opened it
        self._restarting = anyio.Lock()
        self._group: group_commit.GroupCommit | None = None
        self._file = DatabaseFile(self.path)
        self.webhooks = WebhookStore(self)  # same database, same committer
        self._last_names: tuple[tuple[str, ...] | None, str] = (None, "")

    async def start_early(self) -> None:
        """Make the file's directory and start the database process, without waiting for it to
        be ready (``open`` does). A server calls this before it imports its own modules, so
        that the two starts overlap."""
        if self._process is None:
            self._existed = self._file.prepare()
            self._process = self._new_process()
            await self._process.spawn()

    async def open(self) -> None:
        await self.start_early()
        try:
            await self._start_process()
            # A write: a database that cannot be written fails here, at start.
            self.applied_migrations = await self._run(sqlite_ops.migrate)
        except (sqlite3.Error, StoreUnavailable, DatabaseProcessGone) as exc:
            await self.close()
            raise ConfigError(f"cannot use {self.path} as Conveyor's database: {exc}") from None
        self._file.remember()
        if self._group is not None:
            self._group.before_writes = self._file.guard()
        if not self._existed:
            self._file.log_creation()

    def _new_process(self) -> SQLiteProcess:
        return SQLiteProcess(partial(sqlite_ops.connect, self.path, self._synchronous))

    async def _start_process(self) -> None:
        """Wait for the database process to be ready (a new one unless one was started)."""
        process = self._process = self._process or self._new_process()
        try:
            await process.start()
        except BaseException:
            self._process = None  # closed by its failed start
            raise
        # Before each write the database process checks that the file is still the one opened.
        self._group = group_commit.GroupCommit(process, before_writes=self._file.guard())

    async def _restart_process(self, failed: group_commit.GroupCommit) -> None:
        """A new database process for the one that died (killed, out of memory), once."""
        async with self._restarting:
            if self._group is not failed:
                return  # closed meanwhile, or another caller restarted it
            if self._process is not None:
                await self._process.close()
                self._process = None
            try:
                await self._start_process()
            except Exception as exc:  # the next call tries again
                logger.error(
                    "database process restart failed",
                    extra={"action": "store.restart_failed", "error": str(exc)},
                )
                return
            logger.warning(
                "database process restarted", extra={"action": "store.process_restarted", "db": self.path}
            )

    @property
    def fault(self) -> str | None:
        """Why this store cannot take writes any more (its file was deleted or replaced), if so."""
        return self._file.fault

    @property
    def where(self) -> str:
        return self.path

    async def close(self) -> None:
        process, self._process, self._group = self._process, None, None
        if process is not None:
            await process.close()

    async def _run(
        self,
        operation: Operation[T],
        *,
        write: bool = True,
        late: bool = False,
        timeout_s: float | None = None,
    ) -> T:
        """Run one operation through the group committer, retrying while another process holds
        the lock, for ``timeout_s`` at most (default ``write_timeout_s``)."""
        patience = self.write_timeout_s if timeout_s is None else timeout_s
        deadline: float | None = None
        delay = 0.002
        while True:
            group = self._group
            if group is None:
                raise RuntimeError("the job store is not open")
            try:
                return await group.run(operation, write=write, late=late)
            except DatabaseFileLost as exc:
                self._file.look()  # noticed by the database process: known (and logged) here too
                raise StoreUnavailable(str(exc), retry_after=STORE_FAULT_RETRY_S) from None
            except DatabaseProcessGone as exc:
                # Whether this operation committed is not known: the caller decides whether to
                # try it again (a retryable error), on a new process.
                await self._restart_process(group)
                raise StoreUnavailable(str(exc), retry_after=1) from None
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise _store_fault(exc) from None
            now = anyio.current_time()
            deadline = now + patience if deadline is None else deadline
            if now >= deadline:
                logger.warning("database busy", extra={"action": "store.busy", "db": self.path})
                raise StoreUnavailable(retry_after=1)
            # Jittered, so that processes that collided do not collide again in step.
            await anyio.sleep(min(deadline - now, delay * random.uniform(0.5, 1.5)))
            delay = min(delay * 2, 0.1)

    async def fetch(self, query: str, params: dict[str, Any], *, write: bool = True) -> builtins.list[Row]:
        return sqlite_ops.records(await self._run(partial(sqlite_ops.fetch_all, query, params), write=write))

    async def fetch_one(self, query: str, params: dict[str, Any], *, write: bool = True) -> Row | None:
        found = sqlite_ops.records(await self._run(partial(sqlite_ops.fetch_one, query, params), write=write))
        return found[0] if found else None

    async def execute(self, query: str, params: dict[str, Any]) -> int:
        return await self._run(partial(sqlite_ops.execute, query, params))

    def names(self, values: Sequence[str] | None) -> Any:
        if values is None:
            return None
        # A worker claims with the same tuple of tool names claim after claim: written once.
        if not isinstance(values, tuple):
            return json.dumps(list(values))  # read with json_each
        if values is not self._last_names[0]:
            self._last_names = (values, json.dumps(values))
        return self._last_names[1]

    async def insert(self, job: NewJob) -> Job | None:
        # It returns what only the store knows: version and position.
        stored = await self._run(partial(sqlite_ops.insert, self._insert_params(job)))
        return None if stored is None else job.queued(version=stored[0], position_in_queue=stored[1])

    async def _page_and_total(
        self, listing: str, counting: str, params: dict[str, Any], *, limit: int, offset: int
    ) -> tuple[builtins.list[Job], int]:
        return await self._run(
            partial(sqlite_ops.page_and_total, listing, counting, params, limit, offset), write=False
        )

    async def _claim(self, params: dict[str, Any], limit: int) -> builtins.list[Job]:
        # Little patience: the caller (a worker) tries again soon anyway, and a claim is shielded
        # from cancellation, so a long one would hold up a shutdown.
        # Late in its batch, it sees the jobs inserted in the same transaction.
        return await self._run(
            partial(sqlite_ops.claim_each, params, limit), late=True, timeout_s=CLAIM_TIMEOUT_S
        )

    async def _terminal(self, query: str, params: dict[str, Any]) -> Job | None:
        job, deliveries = await self._run(partial(sqlite_ops.end_job, query, params))
        self._delivered(deliveries)
        return job

    async def _ended(self, job: Job, params: dict[str, Any]) -> Job | None:
        finished = await self._run(partial(sqlite_ops.finish, params, job if job.webhook_url else None))
        if finished is None:
            return None  # the fence refused it: not in this run any more
        values, deliveries = finished
        self._delivered(deliveries)
        return sqlite_ops.ended(job, params, values)

    def _delivered(self, deliveries: int) -> None:
        if deliveries:
            self.webhooks.deliveries_added.set()

    # -- changes made by other processes ------------------------------------------------------

    # -- key revocations: a marker file beside the database ----------------------------------

    async def revoke_api_key(self, key_id: str, *, now: int) -> bool:
        # Marked before the commit too: a process that re-reads a key between the two marks
        # reads it again after the second.
        await anyio.to_thread.run_sync(self._mark_revocation)
        revoked = await super().revoke_api_key(key_id, now=now)
        await anyio.to_thread.run_sync(self._mark_revocation)
        return revoked

    def key_revocations(self) -> Hashable:
        try:
            found = os.stat(self._revocations_path)
        except FileNotFoundError:
            return "none yet"
        return (found.st_ino, found.st_mtime_ns, found.st_size)

    @property
    def _revocations_path(self) -> str:
        return self.path + REVOCATIONS_SUFFIX

    def _mark_revocation(self) -> None:
        """Replace the marker file: a new inode, so its mark changes even within one clock tick."""
        draft = f"{self._revocations_path}.{os.getpid()}.{secrets.token_hex(4)}"
        with open(draft, "w") as file:
            file.write(f"{time.time_ns()}\n")
        os.replace(draft, self._revocations_path)

    async def watch_changes(
        self,
        on_change: Callable[[builtins.list[Job]], None],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``on_change`` with the jobs other processes changed, oldest change first, until cancelled.

        SQLite tells a connection that others committed through ``PRAGMA data_version``, read on
        the database thread, and the jobs table is read only when it moved. Every commit writes
        the WAL file, so a tick whose WAL file looks as it did (inode, size, modification time:
        one ``stat`` on the event loop) skips even that; data_version is still read every
        ``WATCH_FULL_LOOK_TICKS``, for a commit that left all three as they were (a WAL restarted
        from its start within one tick of the file system's clock).
        """
        data_version, seen = await self._run(sqlite_ops.change_marks, write=False)
        task_status.started()
        wal_seen, ticks = self._wal_mark(), 0
        while True:
            await anyio.sleep(WATCH_INTERVAL_S)
            self._file.look()  # a deleted or replaced file is noticed even with nothing written
            wal, ticks = self._wal_mark(), ticks + 1
            if wal is not None and wal == wal_seen and ticks < WATCH_FULL_LOOK_TICKS:
                continue
            wal_seen, ticks = wal, 0  # marked before data_version is read: a later commit moves it
            try:
                current = await self._run(sqlite_ops.data_version, write=False)
                if current == data_version:
                    continue
                data_version = current
                more = True
                while more:
                    params = {"since": seen, "origin": self.origin, "limit": CHANGES_PAGE}
                    changed, seen, more = await self._run(
                        partial(sqlite_ops.changes_since, params), write=False
                    )
                    if changed:
                        on_change(changed)
            except Exception:  # a read failed (the disk?): look again next tick
                logger.exception("change watch failed", extra={"action": "store.watch_failed"})

    def _wal_mark(self) -> Hashable | None:
        try:
            found = os.stat(self.path + "-wal")
        except OSError:
            return None  # no WAL file (yet): nothing to tell a change by
        return (found.st_ino, found.st_size, found.st_mtime_ns)
