"""Database rows as the engine's frozen dataclasses, and JSON columns as text: one conversion for
every store (a row is anything with ``keys()`` and indexing by position and name: sqlite3.Row,
asyncpg.Record)."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from conveyor import strict_json
from conveyor.auth import ApiKey
from conveyor.jobs.models import Delivery, Job, JobStatus, Webhook, WebhookEvent, WorkerRecord

logger = logging.getLogger("conveyor.store")

JSON_COLUMNS = ("arguments", "progress", "result", "error", "step_results")
_JOB_FIELDS = frozenset(Job.__dataclass_fields__)
_DELIVERY_FIELDS = frozenset(Delivery.__dataclass_fields__)
_STATUSES = {status.value: status for status in JobStatus}
_LAYOUTS: dict[tuple[str, ...], tuple[tuple[int, str], ...]] = {}


class Row(Protocol):
    def keys(self) -> Any: ...

    def __getitem__(self, key: Any) -> Any: ...


def dump(value: Any) -> str:
    """A JSON column's text. What reaches here was checked at the door; should anything not strict
    slip through, it is stored sanitized rather than as text no client could read back."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        logger.warning("stored a sanitized value", extra={"action": "store.sanitized"})
        return json.dumps(strict_json.sanitized(value), allow_nan=False)


def load(text: str) -> Any:
    value = json.loads(text)
    # Rows written before every door checked its input may hold a lone surrogate (an escape, as
    # stored) or NaN: they read back sanitized, so one job cannot break the listings it is in.
    if "\\ud" in text or "\\uD" in text or "NaN" in text or "Infinity" in text:
        value = strict_json.sanitized(value)
    return value


def to_job(row: Row) -> Job:
    values = {name: row[index] for index, name in _layout(tuple(row.keys()))}
    for column in JSON_COLUMNS:
        if values.get(column) is not None:
            values[column] = load(values[column])
    values["status"] = _STATUSES[values["status"]]
    return Job(**values)


def job_or_none(row: Row | None) -> Job | None:
    return to_job(row) if row is not None else None


def _layout(columns: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """Which columns of a row shape are Job fields, worked out once per shape (rows are hot)."""
    layout = _LAYOUTS.get(columns)
    if layout is None:
        layout = _LAYOUTS[columns] = tuple((i, name) for i, name in enumerate(columns) if name in _JOB_FIELDS)
    return layout


def to_key(row: Row) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=row["role"],
        plan=row["plan"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def to_worker(row: Row) -> WorkerRecord:
    queues = row["queues"]
    return WorkerRecord(
        worker_id=row["worker_id"],
        pid=row["pid"],
        host=row["host"],
        queues=None if queues is None else tuple(json.loads(queues)),
        tools=tuple(json.loads(row["tools"])),
        started_at=row["started_at"],
        seen_at=row["seen_at"],
    )


def to_webhook(row: Row) -> Webhook:
    return Webhook(
        webhook_id=row["webhook_id"],
        owner=row["owner"],
        url=row["url"],
        events=tuple(WebhookEvent(event) for event in json.loads(row["events"])),
        created_at=row["created_at"],
    )


def to_delivery(row: Row) -> Delivery:
    values: dict[str, Any] = {name: row[name] for name in _DELIVERY_FIELDS}  # each is a column
    values["event"] = WebhookEvent(values["event"])
    return Delivery(**values)


def delivery_or_none(row: Row | None) -> Delivery | None:
    return None if row is None else to_delivery(row)
