"""The databases a test can run on: a SQLite file, or a schema of its own in the PostgreSQL server
that ``CONVEYOR_TEST_POSTGRES_URL`` names (dropped after the test). Without that URL the
PostgreSQL runs are skipped, except in CI, where a skipped PostgreSQL test is a failure."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conveyor.jobs.postgres_store import Statement
from conveyor.settings import is_postgres_url

KINDS = ["sqlite", "postgres"]
POSTGRES_URL = os.environ.get("CONVEYOR_TEST_POSTGRES_URL", "")


def postgres_url() -> str:
    """The test server's URL; skips the test without one (fails it in CI)."""
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CONVEYOR_TEST_POSTGRES_URL is not set: CI runs every PostgreSQL test")
        pytest.skip("set CONVEYOR_TEST_POSTGRES_URL to run the PostgreSQL tests")
    return POSTGRES_URL


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of this kind, as a ``--db`` value."""
    if kind == "sqlite":
        yield str(tmp_path / "conveyor.db")
        return
    url = postgres_url()
    schema = f"test_{secrets.token_hex(6)}"
    try:
        yield with_search_path(url, schema)
    finally:
        run_sync(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


async def execute(db: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    """Run one statement (``:name`` parameters) on the database as an operator would, from a
    connection of its own; its rows."""
    params = params or {}
    if not is_postgres_url(db):
        with closing(sqlite3.connect(db)) as conn, conn:
            return conn.execute(sql, params).fetchall()
    statement = Statement(sql)
    conn = await asyncpg.connect(db)
    try:
        return list(await conn.fetch(statement.text, *statement.args(params)))
    finally:
        await conn.close()


def run_sync(url: str, sql: str) -> None:
    """One PostgreSQL statement from synchronous code (a fixture's teardown), on a loop of its own."""

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()
