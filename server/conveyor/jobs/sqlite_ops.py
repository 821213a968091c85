"""The SQLite store's operations: what runs on its connection, in the database process.

Each operation is a module-level function whose last argument is the connection; the store binds
the others with ``functools.partial``, so an operation pickles by reference and crosses to the
database process (``sqlite_process.py``) as a few bytes: statements go by name (``sql/*.sql``). What an operation returns crosses back:
rows become ``Record``s (a ``sqlite3.Row`` does not pickle), claimed and listed rows become jobs
here, off the event loop.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from conveyor.jobs import rows
from conveyor.jobs.models import Job, job_changed
from conveyor.jobs.queries import load_migrations, load_queries

BUSY_TIMEOUT_MS = 250  # one attempt's wait for the write lock; the store retries past it


class Record:
    """A row that crossed from the database process: read by position or by column name, as
    ``sqlite3.Row`` is (see ``rows.Row``)."""

    __slots__ = ("_columns", "_index", "_values")

    def __init__(self, columns: tuple[str, ...], index: dict[str, int], values: tuple[Any, ...]) -> None:
        self._columns, self._index, self._values = columns, index, values

    def keys(self) -> tuple[str, ...]:
        return self._columns

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Any:
        return iter(self._values)

    def __repr__(self) -> str:
        return f"Record({dict(zip(self._columns, self._values, strict=True))!r})"


Rows = tuple[tuple[str, ...], list[tuple[Any, ...]]]  # column names and values: what pickles cheaply


def records(found: Rows) -> list[rows.Row]:
    columns, values = found
    index = {name: at for at, name in enumerate(columns)}
    return [Record(columns, index, row) for row in values]


def connect(path: str, synchronous: str, _unused: None = None) -> sqlite3.Connection:
    """The store's connection (the database process opens it by calling this with no connection)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        conn.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError as exc:
        # Another process switching a new file to WAL at this very moment; it will be WAL.
        if not is_busy(exc):
            raise
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    # Erased credentials do not linger in the page they were cleared from (free: no extra I/O).
    conn.execute("PRAGMA secure_delete = FAST")
    return conn


_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the lock this statement needed (any of SQLite's BUSY or LOCKED codes)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in _BUSY_CODES


# -- generic statements --------------------------------------------------------------------------


def _sql(query: str) -> str:
    return load_queries("sqlite")[query]


def fetch_all(query: str, params: dict[str, Any], conn: sqlite3.Connection) -> Rows:
    cursor = conn.execute(_sql(query), params)
    found = [tuple(row) for row in cursor.fetchall()]
    return _columns(cursor), found


def fetch_one(query: str, params: dict[str, Any], conn: sqlite3.Connection) -> Rows:
    cursor = conn.execute(_sql(query), params)
    row = cursor.fetchone()
    return _columns(cursor), [] if row is None else [tuple(row)]


def execute(query: str, params: dict[str, Any], conn: sqlite3.Connection) -> int:
    return conn.execute(_sql(query), params).rowcount


def _columns(cursor: sqlite3.Cursor) -> tuple[str, ...]:
    return tuple(column[0] for column in cursor.description or ())


# -- jobs ----------------------------------------------------------------------------------------


def insert(params: dict[str, Any], conn: sqlite3.Connection) -> tuple[int, int] | None:
    """A job's insert: its ``version`` and ``position_in_queue``, all the submit does not know."""
    row = conn.execute(_sql("insert_job"), params).fetchone()  # none: an earlier submit's key or duplicate
    return None if row is None else (row[0], row[1])


def page_and_total(
    listing: str, counting: str, params: dict[str, Any], limit: int, offset: int, conn: sqlite3.Connection
) -> tuple[list[Job], int]:
    # One read transaction: the page and the total describe the same moment.
    page = conn.execute(_sql(listing), {**params, "limit": limit, "offset": offset})
    jobs = [rows.to_job(row) for row in page]
    return jobs, int(conn.execute(_sql(counting), params).fetchone()[0] or 0)


def claim_each(params: dict[str, Any], limit: int, conn: sqlite3.Connection) -> list[Job]:
    # One statement per job, in one transaction: each sees the jobs the last one started (an
    # owner's plan limit counts them).
    sql = _sql("claim_next_job")
    claimed: list[Job] = []
    for _ in range(limit):
        job = rows.job_or_none(conn.execute(sql, params).fetchone())
        if job is None:
            break
        claimed.append(job)
    return claimed


def end_job(query: str, params: dict[str, Any], conn: sqlite3.Connection) -> tuple[Job | None, int]:
    """A terminal write that returns the whole row (a cancel of a queued job, a requeue, …), and
    the ended job's deliveries written in the same transaction; the job and how many."""
    row = conn.execute(_sql(query), params).fetchone()
    job = rows.job_or_none(row)
    if job is None or not job.status.terminal:
        return job, 0
    return job, _enqueue_deliveries(conn, job, row["owner_has_webhooks"])


Finished = tuple[int, Any, int | None, str | None]  # version, progress, cancel_requested_at, tool_version


def finish(
    params: dict[str, Any], running: Job | None, conn: sqlite3.Connection
) -> tuple[Finished, int] | None:
    """A run's end; None if the fence refused it (the job is not in this run any more). The row
    gives back only what the run may not know (another process's cancel request, the run's
    last progress, the store's version): ``ended`` makes the ended job of them. ``running``,
    the job as its run began, comes only with a ``webhook_url`` (most jobs: none, and a job is
    the largest thing that would cross); if its owner has webhooks, the ended row is read."""
    row = conn.execute(_sql("finish_job"), params).fetchone()
    if row is None:
        return None
    values: Finished = (row["version"], row["progress"], row["cancel_requested_at"], row["tool_version"])
    if running is not None:
        job = ended(running, params, values)
    elif row["owner_has_webhooks"]:
        job = rows.to_job(conn.execute(_sql("get_job"), {"job_id": params["job_id"]}).fetchone())
    else:
        return values, 0
    return values, _enqueue_deliveries(conn, job, row["owner_has_webhooks"])


def ended(running: Job, params: dict[str, Any], values: Finished) -> Job:
    """The ended job: the running one with the finish's values, as the row now holds it."""
    version, progress, cancel_requested_at, tool_version = values
    return job_changed(
        running,
        status=rows.STATUSES[params["status"]],
        completed_at=params["now"],
        result=rows.load_or_none(params["result"]),
        error=rows.load_or_none(params["error"]),
        step_results=rows.load_or_none(params["step_results"]),
        execution_time_ms=params["execution_time_ms"],
        tool_version=tool_version,
        progress=rows.load_or_none(progress),
        cancel_requested_at=cancel_requested_at,
        version=version,
        lease_owner=None,
        lease_expires_at=None,
        position_in_queue=None,
        sealed_credentials=None,  # erased as the job ends (a trigger)
        status_message=None,
        reused=False,
    )


def _enqueue_deliveries(conn: sqlite3.Connection, job: Job, owner_has_webhooks: bool) -> int:
    """Write the ended job's webhook deliveries (in its end's transaction: the outbox)."""
    # Imported here: it builds the payloads' models, which most jobs (no webhook) never need.
    from conveyor.jobs.webhook_store import WebhookStore

    registered = (
        conn.execute(_sql("webhooks_for_event"), WebhookStore.targets_params(job)).fetchall()
        if owner_has_webhooks
        else []
    )
    deliveries = WebhookStore.deliveries(job, registered)
    if deliveries:  # most jobs have none: no statement for nothing
        conn.executemany(_sql("insert_delivery"), deliveries)
    return len(deliveries)


# -- migrations and other processes' changes -----------------------------------------------------


def migrate(conn: sqlite3.Connection) -> list[int]:
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


def _statements(script: str) -> list[str]:
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


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def change_marks(conn: sqlite3.Connection) -> tuple[int, int]:
    return data_version(conn), int(conn.execute(_sql("last_version")).fetchone()[0])


def changes_since(params: dict[str, Any], conn: sqlite3.Connection) -> tuple[list[Job], int, bool]:
    """A page of the jobs others changed after ``params['since']``; where the next look starts;
    whether there is more."""
    changed = [rows.to_job(row) for row in conn.execute(_sql("jobs_changed_since"), params)]
    if len(changed) == params["limit"]:
        return changed, changed[-1].version, True
    # Past our own writes too: the next look starts after everything committed so far.
    return changed, int(conn.execute(_sql("last_version")).fetchone()[0]), False
