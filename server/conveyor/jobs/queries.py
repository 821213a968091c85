"""Loads SQL from ``sql/*.sql`` files written as named blocks (``-- name: insert_job``)."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def load_queries(dialect: str) -> dict[str, str]:
    """The statements of ``sql/common.sql`` and ``sql/<dialect>.sql``, by name."""
    queries: dict[str, str] = {}
    for source in ("common", dialect):
        parts = _NAME.split(files("conveyor.jobs").joinpath("sql", f"{source}.sql").read_text())
        queries.update((name, body.strip()) for name, body in zip(parts[1::2], parts[2::2], strict=True))
    return queries


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """``(version, script)`` pairs from ``sql/<dialect>_schema/NNNN_name.sql``, in order."""
    folder = files("conveyor.jobs").joinpath("sql", f"{dialect}_schema")
    scripts = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    return [(int(entry.name.split("_", 1)[0]), entry.read_text()) for entry in scripts]
