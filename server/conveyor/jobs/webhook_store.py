"""The webhook tables of a job store's database: registrations, the delivery outbox, the server's secret.

Statements run through the job store (same database, same connections). A terminal job's
deliveries are made by ``deliveries`` and written by the job store inside its terminal write:
one transaction for both.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from typing import Any, Protocol

from conveyor.events import Wakeup
from conveyor.jobs import rows
from conveyor.jobs.models import (
    Delivery,
    DeliveryStatus,
    Job,
    Webhook,
    WebhookEvent,
    new_delivery_id,
    now_ms,
)
from conveyor.jobs.rows import Row
from conveyor.schemas import webhook_payloads


class Statements(Protocol):
    """How the job store runs a named statement (see ``SQLJobStore``)."""

    async def fetch(self, query: str, params: dict[str, Any], *, write: bool = True) -> list[Row]: ...

    async def fetch_one(self, query: str, params: dict[str, Any], *, write: bool = True) -> Row | None: ...

    async def execute(self, query: str, params: dict[str, Any]) -> int: ...

    def names(self, values: Sequence[str] | None) -> Any: ...


class WebhookStore:
    def __init__(self, db: Statements) -> None:
        self._db = db
        # Set once deliveries are committed, so the deliverer need not poll the table for them.
        self.deliveries_added = Wakeup()

    @staticmethod
    def targets_params(job: Job) -> dict[str, Any]:
        """The ``webhooks_for_event`` parameters for a job that just ended: its owner's registrations
        for the event its end is."""
        return {"owner": job.owner, "event": str(WebhookEvent.of(job.status))}

    @staticmethod
    def deliveries(job: Job, registered: Sequence[Row]) -> list[dict[str, Any]]:
        """The ``insert_delivery`` rows of a job that just ended: one for its webhook_url, one per
        registration (``registered``: the owner's ``webhooks_for_event`` rows)."""
        if not job.status.terminal:
            return []
        event = WebhookEvent.of(job.status)
        targets: list[tuple[str | None, str]] = [(None, job.webhook_url)] if job.webhook_url else []
        targets += [(row["webhook_id"], row["url"]) for row in registered]
        if not targets:
            return []
        delivery_ids = [new_delivery_id() for _ in targets]
        payloads, now = webhook_payloads(job, event, delivery_ids), now_ms()
        return [
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
        return await self._db.fetch_one("insert_webhook", params) is not None

    async def list_webhooks(self, owner: str) -> builtins.list[Webhook]:
        found = await self._db.fetch("list_webhooks_of_owner", {"owner": owner}, write=False)
        return [rows.to_webhook(row) for row in found]

    async def delete_webhook(self, webhook_id: str, *, owner: str) -> bool:
        return await self._db.execute("delete_webhook", {"webhook_id": webhook_id, "owner": owner}) > 0

    async def server_secret(self, name: str, candidate: str) -> str:
        """The server's secret called ``name``; ``candidate`` becomes it if there is none yet."""
        await self._db.execute("insert_server_secret", {"name": name, "value": candidate, "now": now_ms()})
        row = await self._db.fetch_one("get_server_secret", {"name": name})
        assert row is not None  # inserted just now, or before
        return str(row[0])

    # -- the outbox -------------------------------------------------------------------------

    async def claim_deliveries(
        self, *, now: int, claimed_until: int, limit: int
    ) -> builtins.list[tuple[Delivery, str | None]]:
        """Due deliveries, each with its registration's secret (None: the job's own webhook_url)."""
        params = {"now": now, "claimed_until": claimed_until, "limit": limit}
        claimed = [rows.to_delivery(row) for row in await self._db.fetch("claim_deliveries", params)]
        registered = [d.webhook_id for d in claimed if d.webhook_id is not None]
        by_id: dict[str, str] = {}
        if registered:
            found = await self._db.fetch(
                "webhook_secrets", {"webhook_ids": self._db.names(registered)}, write=False
            )
            by_id = {row["webhook_id"]: row["secret"] for row in found}
        return [(d, None if d.webhook_id is None else by_id.get(d.webhook_id)) for d in claimed]

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
        return rows.delivery_or_none(await self._db.fetch_one("record_delivery_attempt", params))

    async def release(self, delivery: Delivery, *, now: int) -> None:
        """Hand back a claimed attempt that never ran to its end (shutdown): due again, uncounted."""
        params = {"delivery_id": delivery.delivery_id, "attempt": delivery.attempts, "now": now}
        await self._db.execute("release_delivery", params)

    async def next_due(self) -> int | None:
        row = await self._db.fetch_one("next_delivery_due", {}, write=False)
        return None if row is None or row[0] is None else int(row[0])

    async def deliveries_of_job(self, job_id: str) -> builtins.list[Delivery]:
        found = await self._db.fetch("deliveries_of_job", {"job_id": job_id}, write=False)
        return [rows.to_delivery(row) for row in found]

    async def purge_settled(self, before: int) -> int:
        """Delete delivered and given-up deliveries whose last attempt was before ``before``."""
        return await self._db.execute("purge_settled_deliveries", {"before": before})
