"""Webhooks: registrations, and the deliverer that drains the durable outbox.

A job's terminal write puts its deliveries in the outbox in the same transaction (see the store).
The deliverer, a task of the runtime's task group, claims the due ones (woken when some commit,
and on a slow timer for retries and for rows another process wrote), POSTs each with a signature,
and records the outcome: delivered on a 2xx; otherwise retried with exponential back-off until
``max_attempts``, then given up with its last error kept. Delivery is at least once (a crash
mid-attempt repeats it), so receivers dedupe by ``X-Conveyor-Delivery``.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import logging
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.abc
import httpx2

import conveyor
from conveyor import outbound
from conveyor.errors import AddressNotAllowed, InvalidArguments, WebhookNotFound
from conveyor.events import Fanout, Wakeup
from conveyor.jobs.models import Delivery, DeliveryStatus, Webhook, WebhookEvent, now_ms

logger = logging.getLogger("conveyor.webhooks")

SERVER_SECRET_NAME = "webhook_secret"
MAX_WEBHOOKS_PER_OWNER = 25  # bounds the fan-out of one job's end
CLAIM_MARGIN_S = 30.0  # a claim outlives its attempt's timeout by this much
STORE_RETRY_S = 1.0  # after a failed claim (say, a database locked by another process)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    max_attempts: int = 10
    retry_base_s: float = 10.0
    retry_max_s: float = 3600.0
    timeout_s: float = 10.0  # one attempt, from DNS to the response's status line
    concurrency: int = 8
    allow_private_addresses: bool = False
    poll_interval_s: float = 5.0
    retention_s: float = 7 * 24 * 3600
    secret: str | None = field(default=None, repr=False)  # signs deliveries to a job's own webhook_url

    def retry_delay_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failure: doubling, capped, and jittered so that
        deliveries that failed together (a receiver down) do not all come back at once."""
        delay = min(self.retry_max_s, self.retry_base_s * 2.0 ** (attempts - 1))
        return delay * random.uniform(0.75, 1.0)


class WebhookStore(Protocol):
    deliveries_added: Wakeup

    async def insert_webhook(self, webhook: Webhook, secret: str, *, max_per_owner: int) -> bool: ...

    async def list_webhooks(self, owner: str) -> builtins.list[Webhook]: ...

    async def delete_webhook(self, webhook_id: str, *, owner: str) -> bool: ...

    async def server_secret(self, name: str, candidate: str) -> str: ...

    async def claim_deliveries(
        self, *, now: int, claimed_until: int, limit: int
    ) -> builtins.list[tuple[Delivery, str | None]]: ...

    async def record_attempt(
        self,
        delivery: Delivery,
        *,
        status: DeliveryStatus,
        next_attempt_at: int | None = None,
        delivered_at: int | None = None,
        last_error: str | None = None,
    ) -> Delivery | None: ...

    async def release(self, delivery: Delivery, *, now: int) -> None: ...

    async def next_due(self) -> int | None: ...

    async def deliveries_of_job(self, job_id: str) -> builtins.list[Delivery]: ...

    async def purge_settled(self, before: int) -> int: ...


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Conveyor-Signature`` of a body: ``sha256=`` and the hex HMAC-SHA256 under the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(self, store: WebhookStore, config: WebhookConfig, *, server_secret: str) -> None:
        self.store = store
        self.config = config
        self.server_secret = server_secret
        self.outcomes = Fanout[Delivery]()  # each attempt's settled delivery, for whoever watches
        self._in_flight = 0
        self._client: httpx2.AsyncClient | None = None  # made at the first delivery (_http_client)
        self._claim_ms = int((config.timeout_s + CLAIM_MARGIN_S) * 1000)

    @classmethod
    async def open(cls, store: WebhookStore, config: WebhookConfig) -> Webhooks:
        """With the configured secret, else the one made on the database's first start."""
        secret = config.secret or await store.server_secret(SERVER_SECRET_NAME, new_secret())
        return cls(store, config, server_secret=secret)

    # -- registrations ----------------------------------------------------------------------

    async def register(
        self, owner: str, url: str, events: Sequence[WebhookEvent] | None = None
    ) -> tuple[Webhook, str]:
        """A new registration and its signing secret, which is returned this once."""
        outbound.check_url(url, argument="url", allow_private=self.config.allow_private_addresses)
        webhook = Webhook(
            webhook_id=f"wh_{secrets.token_hex(12)}",
            owner=owner,
            url=url,
            events=tuple(dict.fromkeys(events)) if events else tuple(WebhookEvent),
            created_at=now_ms(),
        )
        secret = new_secret()
        if not await self.store.insert_webhook(webhook, secret, max_per_owner=MAX_WEBHOOKS_PER_OWNER):
            raise InvalidArguments(
                f"A key may register at most {MAX_WEBHOOKS_PER_OWNER} webhooks; delete one first",
                argument="url",
                suggested_fix="Delete a webhook you no longer need: DELETE /webhooks/{webhook_id}.",
            )
        logger.info(
            "webhook registered", extra={"action": "webhook.registered", "webhook_id": webhook.webhook_id}
        )
        return webhook, secret

    async def list(self, owner: str) -> builtins.list[Webhook]:
        return await self.store.list_webhooks(owner)

    async def delete(self, webhook_id: str, *, owner: str) -> None:
        """Unregister (its pending deliveries go with it); another owner's id is not found."""
        if not await self.store.delete_webhook(webhook_id, owner=owner):
            raise WebhookNotFound(f"Webhook {webhook_id} does not exist", webhook_id=webhook_id)

    # -- delivery ---------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled by the owning lifespan."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._purger)
                task_status.started()
                while True:
                    try:
                        await self._dispatch(tg)
                    except Exception:  # a locked database must not stop delivery for good
                        logger.exception(
                            "webhook dispatch failed", extra={"action": "webhook.dispatch_failed"}
                        )
                        await anyio.sleep(STORE_RETRY_S)
        finally:
            if self._client is not None:
                with anyio.CancelScope(shield=True):
                    await self._client.aclose()
                self._client = None

    def _http_client(self) -> httpx2.AsyncClient:
        """The deliveries' HTTP client, made at the first delivery: its TLS context takes some
        30 ms to build, which a server that never sends one should not pay as it starts."""
        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=self.config.timeout_s,
                follow_redirects=False,  # a redirect would lead past the address check
                trust_env=False,  # nor may a proxy from the environment
                # No kept-alive connections: the pool keys them by address, and a TLS connection made
                # for one host name must not carry another's delivery that resolved to the same address.
                limits=httpx2.Limits(max_connections=self.config.concurrency, max_keepalive_connections=0),
                headers={"User-Agent": f"Conveyor-Webhooks/{conveyor.__version__}"},
            )
        return self._client

    async def _dispatch(self, tg: anyio.abc.TaskGroup) -> None:
        """Claim what is due while there is room, then sleep until woken or the next retry."""
        wakeup = self.store.deliveries_added
        while True:
            wakeup.clear()  # a set from here on (a commit, a freed slot) ends the wait below
            wait_s = self.config.poll_interval_s
            free = self.config.concurrency - self._in_flight
            if free > 0:
                now = now_ms()
                claimed = await self.store.claim_deliveries(
                    now=now, claimed_until=now + self._claim_ms, limit=free
                )
                for delivery, secret in claimed:
                    self._in_flight += 1
                    tg.start_soon(self._deliver, self._http_client(), delivery, secret)
                if len(claimed) == free:
                    continue  # more may be due: they wait for a slot
                due = await self.store.next_due()
                if due is not None:
                    wait_s = min(wait_s, max(0.0, (due - now_ms()) / 1000))
            with anyio.move_on_after(wait_s):
                await wakeup.wait()

    async def _deliver(self, client: httpx2.AsyncClient, delivery: Delivery, secret: str | None) -> None:
        try:
            try:
                error, retryable = await self._attempt(client, delivery, secret)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):  # shutdown: hand the attempt back, uncounted
                    await self.store.release(delivery, now=now_ms())
                raise
            settled = await self._settle(delivery, error, retryable)
            if settled is not None:
                self.outcomes.publish(settled)
        except Exception:  # the store failed: the claim lapses and the delivery falls due again
            logger.exception("webhook attempt not recorded", extra={"action": "webhook.record_failed"})
        finally:
            self._in_flight -= 1
            self.store.deliveries_added.set()  # a free slot

    async def _attempt(
        self, client: httpx2.AsyncClient, delivery: Delivery, secret: str | None
    ) -> tuple[str | None, bool]:
        """POST one delivery: ``(None, _)`` when delivered, else why not and whether to retry."""
        if delivery.webhook_id is not None and secret is None:
            return "the webhook was deleted", False
        body = delivery.payload.encode()
        headers = {
            "Content-Type": "application/json",
            "X-Conveyor-Event": str(delivery.event),
            "X-Conveyor-Delivery": delivery.delivery_id,
            "X-Conveyor-Signature": sign(secret or self.server_secret, body),
        }
        try:
            with anyio.fail_after(self.config.timeout_s):  # the whole attempt, DNS included
                status = await outbound.post(
                    client,
                    delivery.url,
                    content=body,
                    headers=headers,
                    allow_private=self.config.allow_private_addresses,
                )
        except AddressNotAllowed as exc:  # a policy refusal: retrying would only be refused again
            return f"{exc.code}: {exc.message}", False
        except TimeoutError:
            return f"no answer within {self.config.timeout_s:g} s", True
        except (httpx2.HTTPError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}".rstrip(": "), True
        return (None, True) if 200 <= status < 300 else (f"HTTP {status}", True)

    async def _settle(self, delivery: Delivery, error: str | None, retryable: bool) -> Delivery | None:
        now = now_ms()
        log = {"delivery_id": delivery.delivery_id, "job_id": delivery.job_id, "attempts": delivery.attempts}
        if error is None:
            logger.info("webhook delivered", extra={"action": "webhook.delivered", **log})
            return await self.store.record_attempt(delivery, status="delivered", delivered_at=now)
        if retryable and delivery.attempts < self.config.max_attempts:
            retry_at = now + int(self.config.retry_delay_s(delivery.attempts) * 1000)
            logger.info("webhook retry", extra={"action": "webhook.retry", "error": error, **log})
            return await self.store.record_attempt(
                delivery, status="pending", next_attempt_at=retry_at, last_error=error
            )
        logger.warning("webhook given up", extra={"action": "webhook.failed", "error": error, **log})
        return await self.store.record_attempt(delivery, status="failed", last_error=error)

    async def _purger(self) -> None:
        """Settled deliveries are kept as long as finished jobs, then deleted."""
        while True:
            await anyio.sleep(self.config.poll_interval_s)
            try:
                await self.store.purge_settled(now_ms() - int(self.config.retention_s * 1000))
            except Exception:
                logger.exception("webhook purge failed", extra={"action": "webhook.purge_failed"})
