"""What the command line prints for people (``--json`` prints the same for scripts)."""

from __future__ import annotations

import time
from typing import Any


class Text(str):
    """Output that is already text for people: printed as it is, not as JSON."""


def job_table(views: list[dict[str, Any]], page: dict[str, int]) -> str:
    """Jobs as a table, one line each, newest first, and how many there are in all."""
    if not views:
        return f"no jobs (of {page['total']})" if page["offset"] else "no jobs"
    rows: list[tuple[str, ...]] = [("JOB", "TOOL", "STATUS", "AGE", "TOOK", "PROGRESS / OUTCOME")]
    rows += [_row(view) for view in views]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    shown = f"{page['offset'] + 1}-{page['offset'] + len(views)} of {page['total']}"
    return "\n".join([*(line.rstrip() for line in lines), f"({shown}; --json for every field)"])


def _row(view: dict[str, Any]) -> tuple[str, ...]:
    took = view.get("execution_time_ms")
    return (
        view["job_id"],
        view["tool"],
        view["status"],
        _age(view["created_at"]),
        "" if took is None else f"{took / 1000:.1f}s",
        _detail(view),
    )


def _detail(view: dict[str, Any]) -> str:
    if view["status"] == "queued":
        return view.get("status_message") or f"position {view.get('position_in_queue')}"
    if view["status"] == "running":
        progress = view.get("progress") or {}
        percentage = progress.get("percentage")
        return " ".join(
            part
            for part in (
                f"{percentage:.0f}%" if percentage is not None else "",
                progress.get("message") or "",
            )
            if part
        )
    error = view.get("error")
    if error:
        return f"{error.get('code')}: {error.get('message', '')}"[:80]
    return ""


def _age(created_at: int) -> str:
    seconds = max(0, int(time.time()) - created_at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
