"""Database rows as the engine's frozen dataclasses, and JSON columns as text: one conversion for
every store (a row is anything with ``keys()`` and indexing by position and name: sqlite3.Row,
asyncpg.Record)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any, Protocol

from conveyor import strict_json
from conveyor.auth import ApiKey
from conveyor.jobs.models import Delivery, Job, JobStatus, Webhook, WebhookEvent, WorkerRecord, job_of

logger = logging.getLogger("conveyor.store")

JSON_COLUMNS = ("arguments", "progress", "result", "error", "step_results")
_DELIVERY_FIELDS = frozenset(Delivery.__dataclass_fields__)
STATUSES = {status.value: status for status in JobStatus}
_DECODERS: dict[tuple[str, ...], Callable[[Row], Job]] = {}


class Row(Protocol):
    def keys(self) -> Any: ...

    def __getitem__(self, key: Any) -> Any: ...


def dump(value: Any) -> str:
    """A JSON column's text. What reaches here was checked at the door; should anything not strict
    slip through, it is stored sanitized rather than as text no client could read back."""
    try:
        return _COLUMN.encode(value)
    except ValueError:
        logger.warning("stored a sanitized value", extra={"action": "store.sanitized"})
        return _COLUMN.encode(strict_json.sanitized(value))


_COLUMN = json.JSONEncoder(allow_nan=False)  # made once (json.dumps with options makes one a call)


def load_or_none(text: str | None) -> Any:
    """A JSON column's value; NULL stays None."""
    return None if text is None else load(text)


def load(text: str) -> Any:
    value = json.loads(text)
    # Rows written before every door checked its input may hold a lone surrogate (an escape, as
    # stored) or NaN: they read back sanitized, so one job cannot break the listings it is in.
    if "\\ud" in text or "\\uD" in text or "NaN" in text or "Infinity" in text:
        value = strict_json.sanitized(value)
    return value


def to_job(row: Row) -> Job:
    shape = tuple(row.keys())
    decode = _DECODERS.get(shape)
    if decode is None:
        decode = _DECODERS[shape] = _job_decoder(shape)
    return decode(row)


def job_or_none(row: Row | None) -> Job | None:
    return to_job(row) if row is not None else None


def _job_decoder(columns: tuple[str, ...]) -> Callable[[Row], Job]:
    """How a row of this shape becomes a Job, worked out once per shape: rows are hot (three per
    job at least), so each is read by position into Job's fields in order, with no dict between."""
    where = {name: index for index, name in enumerate(columns)}
    fields = dataclasses.fields(Job)
    # A field the row lacks takes its default (a row may also hold columns that are no field).
    taken = tuple(where.get(field.name) for field in fields)
    defaults: tuple[Any, ...] = tuple(field.default for field in fields)
    lacking = [
        f.name for f, at, d in zip(fields, taken, defaults, strict=True) if at is None and d is MISSING
    ]
    if lacking:
        raise ValueError(f"a job row needs the columns {lacking}")
    json_at = tuple(
        i for i, field in enumerate(fields) if field.name in JSON_COLUMNS and taken[i] is not None
    )
    status_at = next(i for i, field in enumerate(fields) if field.name == "status")

    def decode(row: Row) -> Job:
        values: list[Any] = [
            default if index is None else row[index] for index, default in zip(taken, defaults, strict=True)
        ]
        for i in json_at:
            if values[i] is not None:
                values[i] = load(values[i])
        values[status_at] = STATUSES[values[status_at]]
        return job_of(values)

    return decode


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
