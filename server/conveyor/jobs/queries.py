"""Loads SQL from ``sql/*.sql`` files written as named blocks (``-- name: insert_job``)."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def load_queries(dialect: str) -> dict[str, str]:
    text = files("conveyor.jobs").joinpath("sql", f"{dialect}.sql").read_text()
    parts = _NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """``(version, script)`` pairs from ``sql/<dialect>_schema/NNNN_name.sql``, in order."""
    folder = files("conveyor.jobs").joinpath("sql", f"{dialect}_schema")
    scripts = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    return [(int(entry.name.split("_", 1)[0]), entry.read_text()) for entry in scripts]
