"""SQLite job store: one connection on a thread of its own, WAL, migrations by ``PRAGMA user_version``.

Any number of processes may share the database file. Every statement goes through the group
committer; a write that meets another process's write lock is retried until it commits or
``write_timeout_s`` runs out (then ``StoreUnavailable``: nothing was committed). Each process
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
from conveyor.jobs import group_commit, rows
from conveyor.jobs.models import Job, NewJob, job_changed
from conveyor.jobs.queries import load_migrations, load_queries
from conveyor.jobs.rows import Row
from conveyor.jobs.sql_store import SQLJobStore
from conveyor.jobs.sqlite_file import DatabaseFile, DatabaseFileLost
from conveyor.jobs.sqlite_thread import SQLiteThread
from conveyor.jobs.webhook_store import WebhookStore

logger = logging.getLogger("conveyor.store")

BUSY_TIMEOUT_MS = 250  # one attempt's wait for the write lock, on the connection's thread
WATCH_INTERVAL_S = 0.05  # how often the watch looks: changes reach other processes this fast
WATCH_FULL_LOOK_TICKS = 20  # data_version is read at least this often (1 s), whatever the WAL file says
CHANGES_PAGE = 500
REVOCATIONS_SUFFIX = ".keys-revoked"  # replaced on every revocation: caches of keys check it
CLAIM_TIMEOUT_S = 0.5
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
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


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the lock this statement needed (any of SQLite's BUSY or LOCKED codes)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in _BUSY_CODES


class SQLiteJobStore(SQLJobStore):
    ordered_commits = True  # one connection, one queue of statements

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", write_timeout_s: float = 10.0) -> None:
        self.path = str(path)
        self.write_timeout_s = write_timeout_s
        # Stamped on every job this store writes, so its watcher can skip its own changes.
        self.origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._synchronous = synchronous
        self._q = load_queries("sqlite")
        self._thread: SQLiteThread | None = None
        self._group: group_commit.GroupCommit | None = None
        self._file = DatabaseFile(self.path)
        self.webhooks = WebhookStore(self)  # same database, same committer
        self._last_names: tuple[tuple[str, ...] | None, str] = (None, "")

    async def open(self) -> None:
        existed = self._file.prepare()
        thread = SQLiteThread(self._connect, name=f"conveyor-sqlite:{Path(self.path).name}")
        try:
            await thread.start()
            self._thread, self._group = (
                thread,
                group_commit.GroupCommit(thread, before_writes=self._file.check),
            )
            # A write: a database that cannot be written fails here, at start.
            self.applied_migrations = await self._run(_migrate)
        except (sqlite3.Error, StoreUnavailable) as exc:
            await self.close()
            raise ConfigError(f"cannot use {self.path} as Conveyor's database: {exc}") from None
        self._file.remember()
        if not existed:
            self._file.log_creation()

    @property
    def fault(self) -> str | None:
        """Why this store cannot take writes any more (its file was deleted or replaced), if so."""
        return self._file.fault

    @property
    def where(self) -> str:
        return self.path

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            # Another process switching a new file to WAL at this very moment; it will be WAL.
            if not is_busy(exc):
                raise
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Erased credentials do not linger in the page they were cleared from (free: no extra I/O).
        conn.execute("PRAGMA secure_delete = FAST")
        return conn

    async def close(self) -> None:
        thread, self._thread, self._group = self._thread, None, None
        if thread is not None:
            await thread.close()

    async def _run(
        self,
        operation: group_commit.Operation[group_commit.T],
        *,
        write: bool = True,
        late: bool = False,
        timeout_s: float | None = None,
    ) -> group_commit.T:
        """Run one operation through the group committer, retrying while another process holds
        the lock, for ``timeout_s`` at most (default ``write_timeout_s``)."""
        patience = self.write_timeout_s if timeout_s is None else timeout_s
        deadline: float | None = None
        delay = 0.002
        while True:
            if self._group is None:
                raise RuntimeError("the job store is not open")
            try:
                return await self._group.run(operation, write=write, late=late)
            except DatabaseFileLost as exc:
                raise StoreUnavailable(str(exc), retry_after=STORE_FAULT_RETRY_S) from None
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
        sql = self._q[query]
        return await self._run(lambda conn: conn.execute(sql, params).fetchall(), write=write)

    async def fetch_one(self, query: str, params: dict[str, Any], *, write: bool = True) -> Row | None:
        sql = self._q[query]
        row: Row | None = await self._run(lambda conn: conn.execute(sql, params).fetchone(), write=write)
        return row

    async def execute(self, query: str, params: dict[str, Any]) -> int:
        sql = self._q[query]
        return await self._run(lambda conn: conn.execute(sql, params).rowcount)

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
        params = self._insert_params(job)
        sql = self._q["insert_job"]  # it returns what only the store knows: version and position

        def insert(conn: sqlite3.Connection) -> tuple[int, int] | None:
            row = conn.execute(sql, params).fetchone()  # none: an earlier submit's key or duplicate
            return None if row is None else (row[0], row[1])

        stored = await self._run(insert)
        return None if stored is None else job.queued(version=stored[0], position_in_queue=stored[1])

    async def _page_and_total(
        self, listing: str, counting: str, params: dict[str, Any], *, limit: int, offset: int
    ) -> tuple[builtins.list[Job], int]:
        list_sql, count_sql = self._q[listing], self._q[counting]

        def page_and_total(conn: sqlite3.Connection) -> tuple[builtins.list[Job], int]:
            # One read transaction: the page and the total describe the same moment.
            jobs = [
                rows.to_job(row)
                for row in conn.execute(list_sql, {**params, "limit": limit, "offset": offset})
            ]
            return jobs, int(conn.execute(count_sql, params).fetchone()[0] or 0)

        return await self._run(page_and_total, write=False)

    async def _claim(self, params: dict[str, Any], limit: int) -> builtins.list[Job]:
        sql = self._q["claim_next_job"]

        def claim_each(conn: sqlite3.Connection) -> builtins.list[Job]:
            # One statement per job, in one transaction: each sees the jobs the last one started
            # (an owner's plan limit counts them).
            claimed: builtins.list[Job] = []
            for _ in range(limit):
                job = rows.job_or_none(conn.execute(sql, params).fetchone())
                if job is None:
                    break
                claimed.append(job)
            return claimed

        # Little patience: the caller (a worker) tries again soon anyway, and a claim is shielded
        # from cancellation, so a long one would hold up a shutdown.
        # Late in its batch, it sees the jobs inserted in the same transaction.
        return await self._run(claim_each, late=True, timeout_s=CLAIM_TIMEOUT_S)

    async def _terminal(self, query: str, params: dict[str, Any]) -> Job | None:
        sql = self._q[query]

        def end_and_enqueue(conn: sqlite3.Connection) -> tuple[Job | None, int]:
            row = conn.execute(sql, params).fetchone()
            job = rows.job_or_none(row)
            if job is None or not job.status.terminal:
                return job, 0
            return job, self._enqueue_deliveries(conn, job, row["owner_has_webhooks"])

        return await self._delivering(end_and_enqueue)

    async def _ended(self, job: Job, params: dict[str, Any]) -> Job | None:
        """The finish returns only what it did not set and the run may not know (another
        process's cancel request, the run's last progress, the store's version): the rest of the
        ended job is the running one with the finish's values, as the row now holds it."""
        sql = self._q["finish_job"]

        def end_and_enqueue(conn: sqlite3.Connection) -> tuple[Job | None, int]:
            row = conn.execute(sql, params).fetchone()
            if row is None:
                return None, 0  # the fence refused it: not in this run any more
            ended = job_changed(
                job,
                status=rows.STATUSES[params["status"]],
                completed_at=params["now"],
                result=rows.load_or_none(params["result"]),
                error=rows.load_or_none(params["error"]),
                step_results=rows.load_or_none(params["step_results"]),
                execution_time_ms=params["execution_time_ms"],
                tool_version=row["tool_version"],
                progress=rows.load_or_none(row["progress"]),
                cancel_requested_at=row["cancel_requested_at"],
                version=row["version"],
                lease_owner=None,
                lease_expires_at=None,
                position_in_queue=None,
                sealed_credentials=None,  # erased as the job ends (a trigger)
                status_message=None,
                reused=False,
            )
            return ended, self._enqueue_deliveries(conn, ended, row["owner_has_webhooks"])

        return await self._delivering(end_and_enqueue)

    def _enqueue_deliveries(self, conn: sqlite3.Connection, job: Job, owner_has_webhooks: bool) -> int:
        """Write the ended job's webhook deliveries (in its end's transaction: the outbox)."""
        targets, insert = self._q["webhooks_for_event"], self._q["insert_delivery"]
        registered = (
            conn.execute(targets, WebhookStore.targets_params(job)).fetchall() if owner_has_webhooks else []
        )
        deliveries = WebhookStore.deliveries(job, registered)
        if deliveries:  # most jobs have none: no statement for nothing
            conn.executemany(insert, deliveries)
        return len(deliveries)

    async def _delivering(self, end: Callable[[sqlite3.Connection], tuple[Job | None, int]]) -> Job | None:
        job, deliveries = await self._run(end)
        if deliveries:
            self.webhooks.deliveries_added.set()
        return job

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
        data_version, seen = await self._run(_change_marks, write=False)
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
                current = await self._run(_data_version, write=False)
                if current == data_version:
                    continue
                data_version = current
                more = True
                while more:
                    changed, seen, more = await self._run(partial(self._changes_since, seen), write=False)
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

    def _changes_since(self, since: int, conn: sqlite3.Connection) -> tuple[builtins.list[Job], int, bool]:
        params = {"since": since, "origin": self.origin, "limit": CHANGES_PAGE}
        changed = [rows.to_job(row) for row in conn.execute(self._q["jobs_changed_since"], params)]
        if len(changed) == CHANGES_PAGE:
            return changed, changed[-1].version, True
        # Past our own writes too: the next look starts after everything committed so far.
        return changed, int(conn.execute(self._q["last_version"]).fetchone()[0]), False


def _migrate(conn: sqlite3.Connection) -> builtins.list[int]:
    """Apply the migrations this database has not had, in the caller's write transaction: the
    write lock taken up front makes two processes starting at once apply each migration once.
    The versions applied."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    applied = []
    for version, script in load_migrations("sqlite"):
        if version <= current:
            continue
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        applied.append(version)
    return applied


def _statements(script: str) -> builtins.list[str]:
    """A script's statements, one by one (``executescript`` would commit the caller's transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in pending.splitlines()
    ):
        statements.append(pending.strip())
    return statements


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _change_marks(conn: sqlite3.Connection) -> tuple[int, int]:
    return _data_version(conn), int(conn.execute(load_queries("sqlite")["last_version"]).fetchone()[0])
