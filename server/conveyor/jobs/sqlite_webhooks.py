"""The webhook tables of the SQLite database: registrations, the delivery outbox, the server's secret.

Writes go through the job store's group committer. A terminal job's deliveries are written by
``enqueue``, called inside the job store's own terminal write: one transaction for both.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from conveyor.events import Wakeup
from conveyor.jobs import rows
from conveyor.jobs.group_commit import Operation
from conveyor.jobs.models import (
    Delivery,
    DeliveryStatus,
    Job,
    Webhook,
    WebhookEvent,
    new_delivery_id,
    now_ms,
)
from conveyor.schemas import webhook_payloads

T = TypeVar("T")


class Runner(Protocol):
    def __call__(self, operation: Operation[T], /, *, write: bool = True) -> Awaitable[T]: ...


class SQLiteWebhookStore:
    def __init__(self, run: Runner, queries: dict[str, str]) -> None:
        self._run = run
        self._q = queries
        # Set once deliveries are committed, so the deliverer need not poll the table for them.
        self.deliveries_added = Wakeup()

    def enqueue(self, conn: sqlite3.Connection, job: Job) -> int:
        """Insert the deliveries of a job that just ended (in the caller's transaction); how many."""
        if not job.status.terminal:
            return 0
        event = WebhookEvent.of(job.status)
        targets: list[tuple[str | None, str]] = [(None, job.webhook_url)] if job.webhook_url else []
        registered = conn.execute(self._q["webhooks_for_event"], {"owner": job.owner, "event": str(event)})
        targets += [(row["webhook_id"], row["url"]) for row in registered]
        if not targets:
            return 0
        delivery_ids = [new_delivery_id() for _ in targets]
        payloads, now = webhook_payloads(job, event, delivery_ids), now_ms()
        rows = [
            {
                "delivery_id": delivery_id,
                "job_id": job.job_id,
                "webhook_id": webhook_id,
                "url": url,
                "event": str(event),
                "payload": payload,
                "now": now,
            }
            for delivery_id, (webhook_id, url), payload in zip(delivery_ids, targets, payloads, strict=True)
        ]
        conn.executemany(self._q["insert_delivery"], rows)
        return len(rows)

    # -- registrations ----------------------------------------------------------------------

    async def insert_webhook(self, webhook: Webhook, secret: str, *, max_per_owner: int) -> bool:
        """Commit a registration; False if its owner already has ``max_per_owner`` of them."""
        params = {
            "webhook_id": webhook.webhook_id,
            "owner": webhook.owner,
            "url": webhook.url,
            "events": json.dumps([str(event) for event in webhook.events]),
            "secret": secret,
            "created_at": webhook.created_at,
            "max_per_owner": max_per_owner,
        }
        sql = self._q["insert_webhook"]
        return await self._run(lambda conn: conn.execute(sql, params).fetchone() is not None)

    async def list_webhooks(self, owner: str) -> builtins.list[Webhook]:
        sql = self._q["list_webhooks_of_owner"]
        return await self._run(
            lambda conn: [rows.to_webhook(row) for row in conn.execute(sql, {"owner": owner})], write=False
        )

    async def delete_webhook(self, webhook_id: str, *, owner: str) -> bool:
        sql, params = self._q["delete_webhook"], {"webhook_id": webhook_id, "owner": owner}
        return await self._run(lambda conn: conn.execute(sql, params).rowcount > 0)

    async def server_secret(self, name: str, candidate: str) -> str:
        """The server's secret called ``name``; ``candidate`` becomes it if there is none yet."""
        insert, select = self._q["insert_server_secret"], self._q["get_server_secret"]

        def get_or_create(conn: sqlite3.Connection) -> str:
            conn.execute(insert, {"name": name, "value": candidate, "now": now_ms()})
            return str(conn.execute(select, {"name": name}).fetchone()[0])

        return await self._run(get_or_create)

    # -- the outbox -------------------------------------------------------------------------

    async def claim_deliveries(
        self, *, now: int, claimed_until: int, limit: int
    ) -> builtins.list[tuple[Delivery, str | None]]:
        """Due deliveries, each with its registration's secret (None: the job's own webhook_url)."""
        claim, secrets = self._q["claim_deliveries"], self._q["webhook_secrets"]
        params = {"now": now, "claimed_until": claimed_until, "limit": limit}

        def claim_with_secrets(conn: sqlite3.Connection) -> list[tuple[Delivery, str | None]]:
            claimed = [rows.to_delivery(row) for row in conn.execute(claim, params).fetchall()]
            ids = json.dumps([d.webhook_id for d in claimed if d.webhook_id is not None])
            by_id = {row["webhook_id"]: row["secret"] for row in conn.execute(secrets, {"webhook_ids": ids})}
            return [(d, None if d.webhook_id is None else by_id.get(d.webhook_id)) for d in claimed]

        return await self._run(claim_with_secrets)

    async def record_attempt(
        self,
        delivery: Delivery,
        *,
        status: DeliveryStatus,
        next_attempt_at: int | None = None,
        delivered_at: int | None = None,
        last_error: str | None = None,
    ) -> Delivery | None:
        """Settle the claimed attempt; None if the delivery is gone (its webhook was deleted)."""
        params = {
            "delivery_id": delivery.delivery_id,
            "attempt": delivery.attempts,
            "status": status,
            "next_attempt_at": next_attempt_at,
            "delivered_at": delivered_at,
            "last_error": last_error,
        }
        sql = self._q["record_delivery_attempt"]
        return await self._run(lambda conn: rows.delivery_or_none(conn.execute(sql, params).fetchone()))

    async def release(self, delivery: Delivery, *, now: int) -> None:
        """Hand back a claimed attempt that never ran to its end (shutdown): due again, uncounted."""
        sql = self._q["release_delivery"]
        params = {"delivery_id": delivery.delivery_id, "attempt": delivery.attempts, "now": now}
        await self._run(lambda conn: conn.execute(sql, params).rowcount)

    async def next_due(self) -> int | None:
        sql = self._q["next_delivery_due"]
        value = await self._run(lambda conn: conn.execute(sql).fetchone()[0], write=False)
        return None if value is None else int(value)

    async def deliveries_of_job(self, job_id: str) -> builtins.list[Delivery]:
        sql = self._q["deliveries_of_job"]
        return await self._run(
            lambda conn: [rows.to_delivery(row) for row in conn.execute(sql, {"job_id": job_id})], write=False
        )

    async def purge_settled(self, before: int) -> int:
        """Delete delivered and given-up deliveries whose last attempt was before ``before``."""
        sql = self._q["purge_settled_deliveries"]
        return await self._run(lambda conn: conn.execute(sql, {"before": before}).rowcount)
