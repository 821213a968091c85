"""Operations for the group-commit tests: module-level, so that they pickle and run in the
database process (``conveyor.jobs.sqlite_process``), which imports this module by name."""

from __future__ import annotations

import sqlite3


def traced_connect(path: str, trace: str, _unused: None = None) -> sqlite3.Connection:
    """A connection that writes every transaction it begins to the file ``trace``, a line each."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0.1)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER UNIQUE)")
    log = open(trace, "a", buffering=1)  # noqa: SIM115 - open as long as the connection
    conn.set_trace_callback(lambda sql: sql.startswith("BEGIN") and log.write(sql + "\n"))
    return conn


def insert(value: int, conn: sqlite3.Connection) -> int:
    return int(conn.execute("INSERT INTO t (x) VALUES (?)", (value,)).rowcount)


def values(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT x FROM t ORDER BY x")]


def count_rows(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])


def gate(in_flight: str, go_on: str, value: int | None, conn: sqlite3.Connection) -> int:
    """Say it runs (a line into the FIFO ``in_flight``), then hold its batch until a line comes
    from the FIFO ``go_on``; then insert ``value``, if any."""
    with open(in_flight, "w") as said:
        said.write("running\n")
    with open(go_on) as heard:
        heard.readline()
    return 0 if value is None else insert(value, conn)
